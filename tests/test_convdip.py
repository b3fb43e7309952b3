"""ConvDIP: shapes and dtypes, derivatives against finite differences, vmap over seeds, and a
tiny image run through the objective and `solve`.

Compilation dominates these tests, so they share one small net (8×8 images, 8 channels, one
upsampling: overparametrised, p ≈ 1200 > n = 64) and run everything jitted: eager dispatch of
a convolutional net compiles every primitive separately.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import flowdip as fd


CONFIG = dict(image_shape=(8, 8), channels=8, num_upsamples=1, dtype=jnp.float64)


@eqx.filter_jit
def _init(key, **kwargs):
    return fd.ConvDIP.init(key, **(CONFIG | kwargs))


@pytest.fixture(scope="module")
def net():
    return _init(jr.key(0))


@eqx.filter_jit
def _output_and_gradient(net):
    trained, frozen = net.partition()
    grads = jax.grad(lambda t: jnp.sum(eqx.combine(t, frozen)() ** 2))(trained)
    return net(), net.image(), ravel_pytree(grads)[0]


def _check_shapes_and_gradients(net, shape, out_channels, dtype):
    x, image, flat = _output_and_gradient(net)
    assert x.shape == (out_channels * shape[0] * shape[1],) and x.dtype == dtype
    assert image.shape == (shape if out_channels == 1 else (out_channels, *shape))
    assert net.out_size == x.size and net.sizes[-1] == shape
    # Flattened row-major, channels first.
    np.testing.assert_array_equal(x, image.reshape(-1))
    assert flat.size == net.num_parameters() and flat.dtype == dtype
    assert bool(jnp.all(jnp.isfinite(flat))) and float(jnp.linalg.norm(flat)) > 0
    # The input is frozen: it is not among the trained leaves.
    trained, frozen = net.partition()
    assert trained.input is None and frozen.input is not None


def test_output_shape_dtype_and_finite_gradients(net):
    _check_shapes_and_gradients(net, (8, 8), 1, jnp.float64)
    assert net.sizes == ((4, 4), (8, 8))


def test_odd_sizes_float32_and_several_output_channels():
    # 7×5 with two upsamplings: stages ⌈7/4⌉×⌈5/4⌉ → 4×3 → 7×5 (no divisibility needed).
    net = _init(
        jr.key(1),
        image_shape=(7, 5),
        channels=(3, 2, 2),
        num_upsamples=2,
        out_channels=3,
        dtype=jnp.float32,
    )
    assert net.sizes == ((2, 2), (4, 3), (7, 5))
    _check_shapes_and_gradients(net, (7, 5), 3, jnp.float32)


def test_jvp_matches_finite_differences_and_vjp_is_its_adjoint(net):
    net = eqx.tree_at(lambda g: g.output_activation, net, fd.Sigmoid(), is_leaf=lambda x: x is None)
    trained, frozen = net.partition()
    flat0, unravel = ravel_pytree(trained)

    def g(flat):
        return eqx.combine(unravel(flat), frozen)()

    v = jr.normal(jr.key(1), flat0.shape, jnp.float64)
    w = jr.normal(jr.key(2), (64,), jnp.float64)
    h = 1e-5

    @jax.jit
    def products(flat):
        jv = jax.jvp(g, (flat,), (v,))[1]
        fd_jv = (g(flat + h * v) - g(flat - h * v)) / (2 * h)
        jtw = jax.vjp(g, flat)[1](w)[0]
        return jv, fd_jv, jtw

    jv, fd_jv, jtw = products(flat0)
    np.testing.assert_allclose(jv, fd_jv, rtol=1e-6, atol=1e-8)
    assert float(jnp.vdot(jv, w)) == pytest.approx(float(jnp.vdot(v, jtw)), rel=1e-12)


def test_vmap_over_seeds_equals_a_loop(net):
    keys = jnp.stack([jr.key(0), jr.key(3), jr.key(4)])
    images = eqx.filter_jit(eqx.filter_vmap(lambda k: _init(k)()))(keys)
    assert images.shape == (3, 64)
    np.testing.assert_allclose(images[0], net(), rtol=1e-13, atol=1e-14)
    for i, k in enumerate(keys):
        np.testing.assert_allclose(images[i], _output_and_gradient(_init(k))[0], rtol=1e-13)


def test_tiny_image_run_reduces_the_loss_by_orders_of_magnitude(net):
    # Denoising an 8×8 image with the overparametrised net: GD at η = 1/L (top Hessian
    # eigenvalue at θ₀ by dense autodiff) drives the loss down by at least 10³, monotonically.
    image = jnp.outer(jnp.linspace(0, 1, 8), jnp.linspace(1, 0.2, 8))
    problem = fd.InverseProblem(fd.Denoising((8, 8)), image.reshape(-1))
    objective = fd.Objective(problem, net)
    flat0, unravel = ravel_pytree(objective.initial_state())
    hess = jax.jit(jax.hessian(lambda f: objective.value(unravel(f))))(flat0)
    L = float(jnp.max(jnp.abs(jnp.linalg.eigvalsh(hess))))
    gd = fd.solve(objective, fd.GradientDescent(1.0 / L), num_steps=1500, num_saves=11)
    assert float(gd.final_loss) < 1e-3 * float(gd.initial_loss)
    assert bool(jnp.all(jnp.diff(gd.loss) <= 1e-12))  # monotone at a stable step


def test_init_rejects_bad_arguments():
    with pytest.raises(ValueError, match="channels"):
        fd.ConvDIP.init(jr.key(0), image_shape=(8, 8), channels=(4, 4), num_upsamples=2)
    with pytest.raises(ValueError, match="num_upsamples"):
        fd.ConvDIP.init(jr.key(0), image_shape=(8, 8), num_upsamples=-1)
    with pytest.raises(ValueError, match="image_shape"):
        fd.ConvDIP.init(jr.key(0), image_shape=(8, 0))
    with pytest.raises(ValueError, match="input_scale"):
        fd.ConvDIP.init(jr.key(0), image_shape=(8, 8), input_scale=0.0)
