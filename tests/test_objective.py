"""The objective: its gradient against autodiff, the reduced path against W-space."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import pytest
from helpers import two_layer_objective

import flowdip as fd


def _w_space_value(objective):
    """F as a function of W, written independently of flowdip's reduced path."""
    g = objective.generator
    A, y = objective.problem.matrix, objective.problem.y

    def F(W):
        x = g.V @ g.activation(W @ g.u) / jnp.sqrt(jnp.float64(g.width))
        return objective.loss(A @ x, y)

    return F


@pytest.mark.parametrize("loss", [fd.MSE(), fd.Huber(0.3), fd.PseudoHuber(0.5), fd.PowerLoss(3)])
def test_reduced_gradient_is_w_gradient_times_u(loss):
    obj = two_layer_objective(loss=loss)
    assert obj.reduced
    F = _w_space_value(obj)
    W0 = obj.generator.W
    value, grad_z = obj.value_and_gradient(obj.initial_state())
    grad_W = jax.grad(F)(W0)
    assert jnp.allclose(value, F(W0), rtol=1e-13, atol=0)
    # Every W-gradient is rank one along uᵀ, and its action on u is the z-velocity.
    assert jnp.allclose(grad_W @ obj.generator.u, grad_z, rtol=1e-12, atol=1e-14)
    assert jnp.allclose(grad_W, jnp.outer(grad_W @ obj.generator.u, obj.generator.u), atol=1e-14)


def test_generic_gradient_matches_autodiff_and_vector_field():
    obj = two_layer_objective(reduced=False, loss=fd.Huber(0.4))
    theta = obj.initial_state()
    grad = obj.gradient(theta)
    auto = jax.grad(obj.value)(theta)
    assert eqx.tree_equal(grad, auto, rtol=1e-12, atol=1e-14)
    field = obj.vector_field(0.0, theta, None)
    assert jnp.allclose(field.W, -auto.W, rtol=1e-12, atol=1e-14)


def test_lift_and_coordinates_are_isometric():
    obj = two_layer_objective()
    z = obj.initial_state() + jr.normal(jr.key(3), (obj.generator.width,))
    lifted = obj.lift(z)
    assert jnp.allclose(lifted.W @ lifted.u, z, atol=1e-13)
    delta_W = lifted.W - obj.generator.W
    assert jnp.allclose(jnp.linalg.norm(delta_W), jnp.linalg.norm(obj.coordinates(z)), rtol=1e-12)
    assert jnp.allclose(lifted(), obj.signal(z), atol=1e-13)
    # W - W0 is rank one: only z moves.
    assert jnp.linalg.matrix_rank(delta_W) == 1


def test_mlp_objective_trains_all_weights():
    kp, kn = jr.split(jr.key(1))
    problem = fd.InverseProblem.compressed_sensing(kp, 6, 10)
    net = fd.MLP.init(kn, d=4, widths=(12, 8), n=10)
    obj = fd.Objective(problem, net)
    assert not obj.reduced
    grad = obj.gradient(obj.initial_state())
    assert grad.u is None
    assert all(jnp.all(jnp.isfinite(w)) and jnp.any(w != 0) for w in grad.weights)


def test_objective_rejects_mismatched_generator_and_forced_reduction():
    kp, kn = jr.split(jr.key(0))
    problem = fd.InverseProblem.compressed_sensing(kp, 6, 10)
    net = fd.TwoLayerDIP.init(kn, d=5, k=20, n=12)
    with pytest.raises(ValueError, match=r"shape \(12,\).*\(6, 10\)"):
        fd.Objective(problem, net)
    mlp = fd.MLP.init(kn, d=4, widths=(8,), n=10)
    with pytest.raises(ValueError, match="reduced=True"):
        fd.Objective(problem, mlp, reduced=True)
    trained_v = fd.TwoLayerDIP.init(kn, d=5, k=20, n=10, train_V=True)
    assert not fd.Objective(problem, trained_v).reduced


def test_objective_rejects_mixed_precision():
    kp, kn = jr.split(jr.key(0))
    problem = fd.InverseProblem.compressed_sensing(kp, 6, 10)
    net = fd.TwoLayerDIP.init(kn, d=5, k=20, n=10, dtype=jnp.float32)
    with pytest.raises(ValueError, match="float32"):
        fd.Objective(problem, net)
