"""solve(): the dynamics against independent integrations, stop rules, result codes."""

import diffrax as dfx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from helpers import two_layer_objective

import flowdip as fd


ETA = 0.5
STEPS = 60


def test_reduced_descent_equals_w_space_descent():
    fast = two_layer_objective()
    slow = two_layer_objective(reduced=False)
    assert fast.reduced and not slow.reduced
    a = fd.solve(fast, fd.GradientDescent(ETA), num_steps=STEPS)
    b = fd.solve(slow, fd.GradientDescent(ETA), num_steps=STEPS)
    assert jnp.allclose(a.final_generator.W, b.final_generator.W, rtol=0, atol=1e-10)
    assert jnp.allclose(a.loss, b.loss, rtol=1e-10, atol=1e-14)
    assert jnp.allclose(a.displacement, b.displacement, rtol=1e-10, atol=1e-12)
    assert jnp.allclose(a.recovery_error, b.recovery_error, rtol=1e-10, atol=1e-12)


def test_reduced_flow_equals_w_space_flow():
    # Both integrated to 1e-12, so each is within ~1e-11 of the same exact flow.
    flow = fd.GradientFlow.reference()
    a = fd.solve(two_layer_objective(), flow, t1=10.0, num_saves=11)
    b = fd.solve(two_layer_objective(reduced=False), flow, t1=10.0, num_saves=11)
    assert jnp.allclose(a.final_generator.W, b.final_generator.W, rtol=0, atol=1e-10)
    assert jnp.allclose(a.loss, b.loss, rtol=1e-10, atol=1e-13)


def test_gradient_descent_is_diffrax_euler():
    obj = two_layer_objective()
    ours = fd.solve(obj, fd.GradientDescent(ETA), num_steps=STEPS, ts=np.arange(STEPS + 1) * ETA)
    eta = jnp.float64(ETA)

    def field(t, z, args):  # time in steps: field −η∇F, dt0 = 1 (STYLE §5)
        return -args * obj.gradient(z)

    sol = dfx.diffeqsolve(
        dfx.ODETerm(field),
        dfx.Euler(),
        t0=0.0,
        t1=float(STEPS),
        dt0=1.0,
        y0=obj.initial_state(),
        args=eta,
        saveat=dfx.SaveAt(ts=jnp.arange(STEPS + 1, dtype=jnp.float64)),
        max_steps=STEPS + 1,
    )
    theirs = jax.vmap(obj.coordinates)(sol.ys)
    assert jnp.allclose(ours.params, theirs, rtol=0, atol=1e-13)
    assert jnp.allclose(ours.ts, eta * jnp.arange(STEPS + 1, dtype=jnp.float64))


def test_default_flow_matches_tight_reference_to_its_tolerance():
    obj = two_layer_objective()
    ts = np.linspace(0, 50, 26)
    default = fd.solve(obj, fd.GradientFlow(), t1=50.0, ts=ts)
    ref = fd.solve(obj, fd.GradientFlow.reference(), t1=50.0, ts=ts)
    # Local tolerance rtol=1e-8, atol=1e-10; allow 100x for the global error of the path.
    scale = jnp.linalg.norm(ref.params, axis=1) + jnp.linalg.norm(obj.initial_state())
    err = jnp.linalg.norm(default.params - ref.params, axis=1)
    assert jnp.all(err <= 100 * (1e-8 * scale + 1e-10))
    assert jnp.allclose(default.loss, ref.loss, rtol=1e-6, atol=1e-12)


def test_descent_gap_to_flow_is_order_one():
    obj = two_layer_objective()
    order = fd.convergence_order(obj, step_sizes=[0.4, 0.2, 0.1, 0.05], t=4.0)
    ratios = order.gaps[:-1] / order.gaps[1:]
    assert jnp.all((ratios > 1.8) & (ratios < 2.2)), ratios
    assert abs(float(order.slope) - 1.0) < 0.1


def test_descent_stops_at_first_step_below_tolerance():
    obj = two_layer_objective()
    free = fd.solve(obj, fd.GradientDescent(ETA), num_steps=400, ts=np.arange(401) * ETA)
    tol = 0.5 * (float(free.loss[150]) + float(free.loss[151]))
    stopped = fd.solve(obj, fd.GradientDescent(ETA), num_steps=400, stop=fd.LossBelow(tol))
    first = int(np.argmax(np.asarray(free.loss) < tol))
    assert int(stopped.num_steps) == first
    assert bool(stopped.converged)
    assert float(stopped.final_loss) < tol <= float(free.loss[first - 1])
    assert jnp.isclose(stopped.stop_time, first * ETA)
    assert not bool(stopped.valid[-1]) and jnp.isnan(stopped.loss[-1])


def test_flow_stops_at_the_crossing_time():
    obj = two_layer_objective()
    tol = 0.05
    flow = fd.GradientFlow.reference()
    run = fd.solve(obj, flow, t1=200.0, stop=fd.LossBelow(tol))
    assert bool(run.converged)
    assert jnp.isclose(run.final_loss, tol, rtol=1e-9)
    # Independently: the reference flow without a stop rule, saved around the crossing.
    t = float(run.stop_time)
    ref = fd.solve(obj, flow, t1=t + 1.0, ts=[t - 1e-3, t, t + 1e-3])
    assert ref.loss[0] > tol > ref.loss[2]
    assert jnp.isclose(ref.loss[1], tol, rtol=1e-8)
    assert not bool(run.valid[-1])


def test_vmap_over_seeds_equals_python_loop():
    def run(key):
        kp, kn = jr.split(key)
        problem = fd.InverseProblem.compressed_sensing(kp, 6, 10, scaling="1/m")
        net = fd.TwoLayerDIP.init(kn, d=5, k=40, n=10)
        obj = fd.Objective(problem, net)
        gd = fd.solve(
            obj, fd.GradientDescent(ETA), num_steps=STEPS, stop=fd.LossBelow(1e-2), throw=False
        )
        gf = fd.solve(obj, fd.GradientFlow(), t1=20.0, stop=fd.LossBelow(1e-2), throw=False)
        return gd.loss, gd.num_steps, gf.final_loss, gf.stop_time

    keys = jr.split(jr.key(7), 3)
    batched = jax.vmap(run)(keys)
    single_run = jax.jit(run)  # one program for the three single runs
    for i in range(3):
        single = single_run(keys[i])
        for b, s in zip(batched, single):
            assert jnp.allclose(b[i], s, rtol=1e-10, atol=1e-14, equal_nan=True)


def test_diverging_descent_reports_step_and_code():
    obj = two_layer_objective(activation=fd.Softplus(), scaling="unit")
    run = fd.solve(obj, fd.GradientDescent(100.0), num_steps=500, throw=False)
    assert run.result == fd.RESULTS.diverged
    assert 0 < int(run.num_steps) < 500
    assert jnp.isfinite(run.final_loss) and run.final_loss > 1e6 * run.initial_loss
    with pytest.raises(fd.SolveError, match=rf"diverged at step {int(run.num_steps)}") as err:
        fd.solve(obj, fd.GradientDescent(100.0), num_steps=500)
    assert err.value.trajectory.result == fd.RESULTS.diverged


def test_non_finite_loss_is_reported():
    obj = two_layer_objective()
    bad = obj.__class__(obj.problem, obj.generator, _NaNLoss())
    run = fd.solve(bad, fd.GradientDescent(ETA), num_steps=10, throw=False)
    assert run.result == fd.RESULTS.non_finite
    assert int(run.num_steps) == 0
    with pytest.raises(fd.SolveError, match="NaN"):
        fd.solve(bad, fd.GradientDescent(ETA), num_steps=10)


class _NaNLoss(fd.MSE):
    def __call__(self, v, y):
        return jnp.full((), jnp.nan, v.dtype)


def test_not_reaching_the_stop_rule_is_an_outcome_not_an_error():
    obj = two_layer_objective()
    run = fd.solve(obj, fd.GradientDescent(ETA), num_steps=5, stop=fd.LossBelow(1e-12))
    assert run.result == fd.RESULTS.max_steps_reached
    assert "horizon" in run.message
    flow = fd.solve(obj, fd.GradientFlow(), t1=2.0, stop=fd.LossBelow(1e-12))
    assert flow.result == fd.RESULTS.max_steps_reached
    assert jnp.isclose(flow.stop_time, 2.0)


def test_flow_out_of_solver_steps_raises_without_a_stop_rule():
    obj = two_layer_objective()
    with pytest.raises(fd.SolveError, match="max_steps"):
        fd.solve(obj, fd.GradientFlow(max_steps=3), t1=100.0)
    run = fd.solve(obj, fd.GradientFlow(max_steps=3), t1=100.0, throw=False)
    assert run.result == fd.RESULTS.max_steps_reached and run.stop_time < 100.0


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: fd.GradientDescent(0.0), "step_size"),
        (lambda: fd.GradientDescent(-1.0), "step_size"),
        (lambda: fd.GradientDescent(float("nan")), "step_size"),
        (lambda: fd.LossBelow(-1e-3), "tol"),
        (lambda: fd.LossBelow(0.0), "tol"),
        (lambda: fd.GradientFlow(rtol=-1e-8), "rtol"),
        (lambda: fd.GradientFlow(atol=-1.0), "atol"),
        (lambda: fd.GradientFlow(max_steps=0), "max_steps"),
    ],
)
def test_bad_hyperparameters_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_solve_arguments():
    obj = two_layer_objective()
    with pytest.raises(ValueError, match="t1"):
        fd.solve(obj, fd.GradientFlow())
    with pytest.raises(ValueError, match="num_steps"):
        fd.solve(obj, fd.GradientFlow(), t1=1.0, num_steps=3)
    with pytest.raises(ValueError, match="horizon"):
        fd.solve(obj, fd.GradientDescent(ETA))
    with pytest.raises(ValueError, match="increasing"):
        fd.solve(obj, fd.GradientFlow(), t1=1.0, ts=[0.5, 0.2])
    with pytest.raises(ValueError, match="same step"):
        fd.solve(obj, fd.GradientDescent(ETA), num_steps=10, ts=[0.5, 0.6])
    with pytest.raises(ValueError, match=r"\[0, t1\]"):
        fd.solve(obj, fd.GradientFlow(), t1=1.0, ts=[0.5, 2.0])


def test_reference_flow_refuses_float32():
    kp, kn = jr.split(jr.key(0))
    problem = fd.InverseProblem.compressed_sensing(kp, 6, 10, dtype=jnp.float32)
    net = fd.TwoLayerDIP.init(kn, d=5, k=20, n=10, dtype=jnp.float32)
    obj = fd.Objective(problem, net)
    with pytest.raises(ValueError, match="float64"):
        fd.solve(obj, fd.GradientFlow.reference(), t1=1.0)


def test_trajectory_records_what_it_names():
    obj = two_layer_objective()
    run = fd.solve(
        obj, fd.GradientDescent(ETA), num_steps=20, ts=[0.0, 5.0, 10.0], save_signal=True
    )
    x_true = obj.problem.x_true
    assert run.signal.shape == (3, 10) and run.params.shape == (3, 40)
    assert jnp.allclose(run.signal[0], obj.generator(), atol=1e-14)
    assert jnp.allclose(run.recovery_error, jnp.linalg.norm(run.signal - x_true[None, :], axis=1))
    assert jnp.allclose(run.displacement, jnp.linalg.norm(run.params, axis=1))
    assert jnp.allclose(run.loss[0], run.initial_loss)
    assert jnp.allclose(run.final_signal, run.final_generator(), atol=1e-13)
    assert jnp.allclose(run.loss[-1], run.final_loss)
    assert list(np.asarray(run.steps)) == [0, 10, 20]
