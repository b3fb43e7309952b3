"""The dynamics interface: what each dynamics says about itself, a new dynamics as one small
class, and the traced solve's segments."""

from typing import ClassVar

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optimistix as optx
import pytest

import flowdip as fd
import flowdip.plot
from flowdip._solve import descent_result, descent_run_to, descent_start


@pytest.fixture(scope="module")
def objective():
    kp, kn = jr.split(jr.key(3))
    problem = fd.InverseProblem.compressed_sensing(kp, m=5, n=8, scaling="1/m")
    net = fd.TwoLayerDIP.init(kn, d=4, k=40, n=8)
    return fd.Objective(problem, net, fd.MSE())


DISCRETE = [
    (fd.GradientDescent(0.5), "GD η=0.5"),
    (fd.InertialDescent(0.25, alpha=1.0), "inertial descent η=0.25"),
    (fd.OptimistixBaseline.bfgs(), "BFGS η=1"),
]
FLOWS = [
    (fd.GradientFlow(), "gradient flow", None),
    (fd.GradientFlow.reference(), "gradient flow", None),
    (fd.ModifiedFlow(0.5), "modified flow", 0.5),
    (fd.InertialFlow(1.0, 0.5), "inertial flow", None),
]


@pytest.mark.parametrize("dynamics, label", DISCRETE, ids=[d[1] for d in DISCRETE])
def test_discrete_dynamics_answer_the_interface(dynamics, label):
    assert dynamics.label() == label
    assert dynamics.time_per_step is dynamics.step_size
    assert not dynamics.needs_float64
    other = dynamics.with_step_size(0.125)
    assert float(other.step_size) == 0.125 and type(other) is type(dynamics)
    assert other.step_size.dtype == dynamics.step_size.dtype


@pytest.mark.parametrize(
    "dynamics, label, eta", FLOWS, ids=[f"{f[1]}-{i}" for i, f in enumerate(FLOWS)]
)
def test_flows_answer_the_interface(dynamics, label, eta):
    assert dynamics.label() == label
    assert dynamics.time_per_step is None
    # Every default flow tolerance is below float32 resolution.
    assert dynamics.needs_float64
    if eta is None:
        assert dynamics.step_size is None
        assert dynamics.with_step_size(0.1) is dynamics
    else:
        assert float(dynamics.step_size) == eta
        assert float(dynamics.with_step_size(0.1).step_size) == 0.1


def test_loose_flows_run_in_float32_and_sweep_flows_use_the_max_norm():
    assert not fd.GradientFlow(rtol=1e-4, atol=1e-6).needs_float64
    flow = fd.GradientFlow.for_sweeps()
    assert flow.norm == "max" and flow.max_steps == 10_000
    assert flow.controller().norm is optx.max_norm
    assert fd.GradientFlow().controller().norm is not optx.max_norm
    with pytest.raises(ValueError, match="norm"):
        fd.ModifiedFlow(0.1, norm="l2")


def test_abstract_bases_cannot_be_instantiated():
    with pytest.raises(TypeError):
        fd.AbstractFlow()
    with pytest.raises(TypeError):
        fd.AbstractDiscreteDynamics()


class _Heun(fd.AbstractDiscreteDynamics):
    """Heun's method on `−∇F`: a second-order discrete dynamics in one small class."""

    unroll: ClassVar[int] = 1
    short_name: ClassVar[str] = "Heun"
    step_size: jax.Array = eqx.field(converter=jnp.asarray)

    def initial_state(self, objective, theta0):
        return theta0

    def parameters(self, state):
        return state

    def step(self, objective, state):
        eta = self.step_size
        value, g1 = objective.value_and_gradient(state)
        g2 = objective.gradient(state - eta * g1)
        return value, state - eta / 2 * (g1 + g2)


class _Ralston(fd.AbstractFlow):
    """The gradient flow under another solver, written as its own small class."""

    solver: dfx.AbstractSolver = dfx.Ralston()
    rtol: float = eqx.field(static=True, default=1e-8)
    atol: float = eqx.field(static=True, default=1e-10)
    max_steps: int = eqx.field(static=True, default=100_000)
    norm: str = eqx.field(static=True, default="rms")
    step_size: None = eqx.field(static=True, default=None)

    def label(self):
        return "Ralston flow"

    def initial_state(self, objective, theta0):
        return theta0

    def parameters(self, state):
        return state

    def vector_field(self, objective):
        return objective.vector_field


def test_a_new_dynamics_is_one_class(objective):
    # Heun is second order: its gap to the flow at fixed time falls like η², where descent's
    # falls like η (an independent check that solve and compare drive it as a discrete run).
    heun = fd.convergence_order(objective, step_sizes=[0.4, 0.2, 0.1], t=4.0, descent=_Heun(1.0))
    assert abs(float(heun.slope) - 2) < 0.2
    # A new flow goes through solve and compare like GradientFlow, and agrees with it.
    ts = jnp.linspace(0, 4.0, 5)
    ref = fd.solve(objective, fd.GradientFlow(), t1=4.0, ts=ts)
    new = fd.solve(objective, _Ralston(), t1=4.0, ts=ts)
    np.testing.assert_allclose(new.loss, ref.loss, rtol=1e-6)
    traj = fd.solve(objective, _Heun(0.1), num_steps=40, ts=ts)
    assert "Heun η=0.1" in flowdip.plot.label_of(traj)
    assert float(fd.compare(ref, traj).step_size) == pytest.approx(0.1)


def test_segments_resume_bit_for_bit(objective):
    """Running the typed loop state to step a, then to b, is the same as running to b, and the
    same as `solve`: what lets a sweep stop, compact and resume runs."""
    gd = fd.GradientDescent(0.5)
    stop = fd.LossBelow(1e-12)
    horizon = jnp.asarray(300, jnp.int32)
    start = descent_start(objective, gd)
    kw = dict(stop=stop, threshold=start.threshold, horizon=horizon)

    @jax.jit
    def two(carry):
        carry = descent_run_to(objective, gd, carry, jnp.asarray(77, jnp.int32), **kw)
        return descent_run_to(objective, gd, carry, horizon + 1, **kw)

    @jax.jit
    def one(carry):
        return descent_run_to(objective, gd, carry, horizon + 1, **kw)

    a, b = two(start.state), one(start.state)
    assert eqx.tree_equal(a, b)
    traj = fd.solve(objective, gd, num_steps=300, stop=stop, throw=False)
    # `solve` is another compiled program (it also saves): equal to round-off.
    assert int(a.step) == int(traj.num_steps)
    np.testing.assert_allclose(float(a.last_loss), float(traj.final_loss), rtol=1e-12)
    assert descent_result(a, **kw) == traj.result


@pytest.mark.parametrize(
    "make",
    [
        lambda v: fd.GradientFlow(max_steps=v),
        lambda v: fd.GradientFlow.for_sweeps(max_steps=v),
        lambda v: fd.ModifiedFlow(0.1, max_steps=v),
        lambda v: fd.InertialFlow(1.0, max_steps=v),
    ],
    ids=["GradientFlow", "for_sweeps", "ModifiedFlow", "InertialFlow"],
)
def test_flow_budgets_take_numpy_integers_and_refuse_bad_ones(make):
    assert make(np.int64(7)).max_steps == 7
    with pytest.raises((ValueError, TypeError), match="max_steps"):
        make(0)
    with pytest.raises((ValueError, TypeError), match="max_steps"):
        make(2.5)


def test_flow_tolerances_refuse_strings():
    with pytest.raises((ValueError, TypeError), match="rtol"):
        fd.InertialFlow(1.0, rtol="1e-3")
    with pytest.raises((ValueError, TypeError), match="atol"):
        fd.ModifiedFlow(0.1, atol="x")
