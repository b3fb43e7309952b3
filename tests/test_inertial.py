"""InertialFlow and InertialDescent against independent solutions of the second-order ODE."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
from helpers import two_layer_objective

import flowdip as fd


# One objective and one tolerance for the flow in every test, and a single save time, so that
# the inertial flow is compiled once for the file (`convergence_order` saves at `t` only).
K = 16
RTOL, ATOL = 1e-12, 1e-14


@pytest.fixture(scope="module")
def obj():
    return two_layer_objective(k=K)


@pytest.mark.parametrize("alpha, beta", [(1.5, 0.0), (1.0, 0.7)])
def test_inertial_flow_solves_the_second_order_ode(alpha, beta, obj):
    # Independent: θ'' = −αθ' − β∇²F θ' − ∇F in the (θ, θ') form with the dense Hessian,
    # solved by scipy's DOP853; β = 0 is the heavy-ball ODE.
    z0 = obj.initial_state()
    grad = jax.jit(lambda z: obj.gradient(z))
    hess = jax.jit(jax.jacfwd(lambda z: obj.gradient(z)))

    def rhs(t, y):
        z, v = y[:K], y[K:]
        a = -alpha * v - beta * np.asarray(hess(jnp.asarray(z))) @ v - np.asarray(grad(z))
        return np.concatenate([v, a])

    t1 = 6.0
    ref = scipy.integrate.solve_ivp(
        rhs, (0.0, t1), np.concatenate([z0, np.zeros(K)]), "DOP853", rtol=1e-11, atol=1e-13
    )
    dyn = fd.InertialFlow(alpha, beta, rtol=RTOL, atol=ATOL)
    traj = fd.solve(obj, dyn, t1=t1, ts=[t1])
    z = z0 + traj.params[-1]  # ‖u‖ = 1: coordinates are z − z₀
    assert np.allclose(z, ref.y[:K, -1], rtol=1e-7, atol=1e-8)
    # The state carries ζ = θ' + β∇F; its velocity is the reference's θ'.
    v = dyn.velocity(obj, traj.final_state)
    assert np.allclose(v, ref.y[K:, -1], rtol=1e-7, atol=1e-8)


def test_inertial_descent_converges_to_the_inertial_flow(obj):
    # Against the flow checked above: the explicit algorithm is consistent of order one.
    order = fd.convergence_order(
        obj,
        step_sizes=[0.2, 0.1, 0.05, 0.025],
        t=6.0,
        dynamics=fd.InertialFlow(1.0, 0.7, rtol=RTOL, atol=ATOL),
        descent=fd.InertialDescent(1.0, 1.0, 0.7),
    )
    assert abs(float(order.slope) - 1) < 0.2
    assert jnp.all(jnp.diff(order.gaps) < 0)


def test_heavy_ball_form(obj):
    # With β = 0 one step is Polyak's heavy ball: θ + (1 − αh)(θ − θ₋) − h²∇F(θ).
    h, alpha = 0.1, 2.0
    dyn = fd.InertialDescent(h, alpha)

    @jax.jit
    def two_steps(z0):
        state = dyn.initial_state(obj, z0)
        _, state = dyn.step(obj, state)
        return dyn.step(obj, state)[1]

    @jax.jit
    def heavy_ball(z0):
        z1 = z0 - h**2 * obj.gradient(z0)
        return z1, z1 + (1 - alpha * h) * (z1 - z0) - h**2 * obj.gradient(z1)

    state = two_steps(obj.initial_state())
    z1, z2 = heavy_ball(obj.initial_state())
    assert jnp.allclose(state[0], z2, rtol=1e-14) and jnp.allclose(state[1], z1, rtol=1e-14)
