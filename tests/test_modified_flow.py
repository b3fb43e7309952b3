"""ModifiedFlow: its field against a dense Hessian, and the O(η)/O(η²) orders of descent."""

import jax
import jax.numpy as jnp
import pytest
from helpers import two_layer_objective

import flowdip as fd


@pytest.mark.parametrize("reduced", [True, False])
def test_field_is_gradient_plus_half_eta_hessian_gradient(reduced):
    # The order test's objective shape (one set of compiled random draws for the file).
    obj = two_layer_objective(reduced=reduced)
    theta = obj.initial_state()
    eta = 0.3
    field = jax.jit(lambda th: fd.ModifiedFlow(eta).vector_field(obj)(0.0, th, None))(theta)
    # Independent: the dense Hessian of F in the flattened parameters.
    flat, unravel = jax.flatten_util.ravel_pytree(theta)
    g = jax.jit(jax.grad(lambda f: obj.value(unravel(f))))(flat)
    H = jax.jit(jax.hessian(lambda f: obj.value(unravel(f))))(flat)
    expected = -(g + eta / 2 * H @ g)
    got = jax.flatten_util.ravel_pytree(field)[0]
    # On the reduced path ‖u‖ = 1, so the z-gradient is the W-velocity.
    assert jnp.allclose(got, expected, rtol=1e-10, atol=1e-13)


def test_descent_is_order_one_to_the_flow_and_order_two_to_the_modified_flow():
    obj = two_layer_objective()
    plain, modified = fd.convergence_order(
        obj,
        step_sizes=[0.4, 0.2, 0.1, 0.05],
        t=4.0,
        dynamics=[fd.GradientFlow.reference(), fd.ModifiedFlow.reference(1.0)],
    )
    assert plain.label == "gradient flow" and modified.label == "modified flow"
    assert abs(float(plain.slope) - 1) < 0.2
    assert abs(float(modified.slope) - 2) < 0.2
    # The modified flow is the closer one at every step size.
    assert jnp.all(modified.gaps < plain.gaps)
    # The single-flow call is unchanged and gives the same first line.
    single = fd.convergence_order(obj, step_sizes=[0.4, 0.2, 0.1, 0.05], t=4.0)
    assert jnp.allclose(single.gaps, plain.gaps, rtol=1e-8)


def test_bad_arguments():
    with pytest.raises(ValueError, match="step_size=-0.1"):
        fd.ModifiedFlow(-0.1)
    with pytest.raises(ValueError, match="rtol"):
        fd.ModifiedFlow(0.1, rtol=0.0)
    with pytest.raises(ValueError, match="alpha=0.0"):
        fd.InertialFlow(0.0)
    with pytest.raises(ValueError, match="beta=-1.0"):
        fd.InertialDescent(0.1, 1.0, -1.0)
