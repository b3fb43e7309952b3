"""InertialFlow and InertialDescent against independent solutions of the second-order ODE."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
from helpers import two_layer_objective

import flowdip as fd


@pytest.mark.parametrize("alpha, beta", [(1.5, 0.0), (1.0, 0.7)])
def test_inertial_flow_solves_the_second_order_ode(alpha, beta):
    # Independent: θ'' = −αθ' − β∇²F θ' − ∇F in the (θ, θ') form with the dense Hessian,
    # solved by scipy's DOP853; β = 0 is the heavy-ball ODE.
    obj = two_layer_objective(k=16)
    z0 = obj.initial_state()
    grad = jax.jit(lambda z: obj.gradient(z))
    hess = jax.jit(jax.jacfwd(lambda z: obj.gradient(z)))

    def rhs(t, y):
        z, v = y[:16], y[16:]
        a = -alpha * v - beta * np.asarray(hess(jnp.asarray(z))) @ v - np.asarray(grad(z))
        return np.concatenate([v, a])

    ts = np.linspace(0.0, 6.0, 7)
    ref = scipy.integrate.solve_ivp(
        rhs, (0.0, 6.0), np.concatenate([z0, np.zeros(16)]), "DOP853", ts, rtol=1e-11, atol=1e-13
    )
    dyn = fd.InertialFlow(alpha, beta, rtol=1e-11, atol=1e-13)
    traj = fd.solve(obj, dyn, t1=6.0, ts=ts)
    z = z0[None] + traj.params  # ‖u‖ = 1: coordinates are z − z₀
    assert np.allclose(z, ref.y[:16].T, rtol=1e-7, atol=1e-8)
    # The state carries ζ = θ' + β∇F; its velocity is the reference's θ'.
    v = dyn.velocity(obj, traj.final_state)
    assert np.allclose(v, ref.y[16:, -1], rtol=1e-7, atol=1e-8)


def test_inertial_descent_converges_to_the_inertial_flow():
    obj = two_layer_objective()
    order = fd.convergence_order(
        obj,
        step_sizes=[0.2, 0.1, 0.05, 0.025],
        t=4.0,
        dynamics=fd.InertialFlow(1.0, 0.5, rtol=1e-12, atol=1e-14),
        descent=fd.InertialDescent(1.0, 1.0, 0.5),
    )
    assert abs(float(order.slope) - 1) < 0.2
    assert jnp.all(jnp.diff(order.gaps) < 0)


def test_heavy_ball_form():
    # With β = 0 one step is Polyak's heavy ball: θ + (1 − αh)(θ − θ₋) − h²∇F(θ).
    obj = two_layer_objective()
    h, alpha = 0.1, 2.0
    dyn = fd.InertialDescent(h, alpha)
    state = dyn.initial_state(obj, obj.initial_state())
    _, state = dyn.step(obj, state)
    _, state = dyn.step(obj, state)
    z0 = obj.initial_state()
    z1 = z0 - h**2 * obj.gradient(z0)
    z2 = z1 + (1 - alpha * h) * (z1 - z0) - h**2 * obj.gradient(z1)
    assert jnp.allclose(state[0], z2, rtol=1e-14) and jnp.allclose(state[1], z1, rtol=1e-14)
