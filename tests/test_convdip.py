"""ConvDIP: shapes and dtypes, derivatives against finite differences, vmap over seeds, and a
tiny image run through the objective and `solve`."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import flowdip as fd


def _net(shape=(8, 8), dtype=jnp.float64, **kwargs):
    kwargs = dict(channels=4, num_upsamples=2) | kwargs
    return fd.ConvDIP.init(jr.key(0), image_shape=shape, dtype=dtype, **kwargs)


@pytest.mark.parametrize(
    "shape, num_upsamples, dtype",
    [((8, 8), 2, jnp.float32), ((13, 10), 2, jnp.float64), ((5, 7), 0, jnp.float64)],
)
def test_output_shape_dtype_and_finite_gradients(shape, num_upsamples, dtype):
    net = _net(shape, dtype, num_upsamples=num_upsamples)
    x = net()
    assert x.shape == (shape[0] * shape[1],) and x.dtype == dtype
    assert net.image().shape == shape and net.out_size == x.size
    assert net.sizes[-1] == shape and len(net.sizes) == num_upsamples + 1
    trained, frozen = net.partition()
    grads = jax.grad(lambda t: jnp.sum(eqx.combine(t, frozen)() ** 2))(trained)
    flat, _ = ravel_pytree(grads)
    assert flat.size == net.num_parameters() and bool(jnp.all(jnp.isfinite(flat)))
    assert float(jnp.linalg.norm(flat)) > 0
    # The input is frozen: it is not among the trained leaves.
    assert trained.input is None and frozen.input is not None


def test_multichannel_output_is_flattened_channels_first():
    net = _net((6, 6), out_channels=3, num_upsamples=1)
    assert net.image().shape == (3, 6, 6)
    np.testing.assert_array_equal(net(), net.image().reshape(-1))


def test_jvp_matches_finite_differences_and_vjp_is_its_adjoint():
    net = _net((8, 8), num_upsamples=2, output_activation=fd.Sigmoid())
    trained, frozen = net.partition()
    flat0, unravel = ravel_pytree(trained)

    def g(flat):
        return eqx.combine(unravel(flat), frozen)()

    v = jr.normal(jr.key(1), flat0.shape, jnp.float64)
    _, jv = jax.jvp(g, (flat0,), (v,))
    h = 1e-5
    fd_jv = (g(flat0 + h * v) - g(flat0 - h * v)) / (2 * h)
    np.testing.assert_allclose(jv, fd_jv, rtol=1e-6, atol=1e-8)
    w = jr.normal(jr.key(2), jv.shape, jnp.float64)
    _, pullback = jax.vjp(g, flat0)
    (jtw,) = pullback(w)
    assert float(jnp.vdot(jv, w)) == pytest.approx(float(jnp.vdot(v, jtw)), rel=1e-12)


def test_vmap_over_seeds_equals_a_loop():
    keys = jr.split(jr.key(3), 3)

    def init(k):
        return fd.ConvDIP.init(k, image_shape=(8, 8), channels=4, num_upsamples=2)

    batched = eqx.filter_vmap(init)(keys)
    images = eqx.filter_vmap(lambda g: g())(batched)
    assert images.shape == (3, 64)
    for i, k in enumerate(keys):
        np.testing.assert_allclose(images[i], init(k)(), rtol=1e-13, atol=1e-14)


def test_tiny_image_run_reduces_the_loss_by_orders_of_magnitude():
    # Denoising an 8×8 image with an overparametrised ConvDIP: GD at η = 1/L̂ (top Hessian
    # eigenvalue by dense autodiff) drives the loss down by at least 10³, and the flow follows.
    image = jnp.outer(jnp.linspace(0, 1, 8), jnp.linspace(1, 0.2, 8))
    problem = fd.InverseProblem(fd.Denoising((8, 8)), image.reshape(-1))
    net = _net((8, 8), channels=8, num_upsamples=1)
    objective = fd.Objective(problem, net)
    flat0, unravel = ravel_pytree(objective.initial_state())
    hess = jax.hessian(lambda f: objective.value(unravel(f)))(flat0)
    L = float(jnp.max(jnp.abs(jnp.linalg.eigvalsh(hess))))
    steps = 1500
    gd = fd.solve(objective, fd.GradientDescent(1.0 / L), num_steps=steps, num_saves=21)
    assert float(gd.final_loss) < 1e-3 * float(gd.initial_loss)
    assert bool(jnp.all(jnp.diff(gd.loss) <= 1e-12))  # monotone at a stable step
    flow = fd.GradientFlow(rtol=1e-4, atol=1e-8)
    gf = fd.solve(objective, flow, t1=steps / L, num_saves=3, save_params=False)
    assert float(gf.final_loss) < 1e-3 * float(gf.initial_loss)


def test_init_rejects_bad_arguments():
    with pytest.raises(ValueError, match="channels"):
        fd.ConvDIP.init(jr.key(0), image_shape=(8, 8), channels=(4, 4), num_upsamples=2)
    with pytest.raises(ValueError, match="num_upsamples"):
        fd.ConvDIP.init(jr.key(0), image_shape=(8, 8), num_upsamples=-1)
    with pytest.raises(ValueError, match="image_shape"):
        fd.ConvDIP.init(jr.key(0), image_shape=(8, 0))
    with pytest.raises(ValueError, match="input_scale"):
        fd.ConvDIP.init(jr.key(0), image_shape=(8, 8), input_scale=0.0)
