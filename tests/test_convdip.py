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
import optax
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


def _reference_image(net):
    # The forward pass written with Equinox's own layers, channels first: its convolutions
    # (lax.conv_general_dilated with its padding), its GroupNorm, the 1×1 head as a layer.
    h = net.input
    for i, conv in enumerate(net.convs):
        if i > 0 and net.sizes[i] != net.sizes[i - 1]:
            h = jax.image.resize(h, (h.shape[0], *net.sizes[i]), method=net.upsampling)
        h = net.activation(conv(h))
        if net.norms is not None:
            h = net.norms[i](h)
    out = net.head(h)
    if net.output_activation is not None:
        out = net.output_activation(out)
    return out[0] if out.shape[0] == 1 else out


@pytest.mark.parametrize(
    "padding_mode, build",
    [("REFLECT", "init"), ("CIRCULAR", "init"), ("ZEROS", "decoder"), ("REPLICATE", "decoder")],
)
def test_image_equals_equinox_layers(padding_mode, build):
    # The network multiplies shifted copies by the kernel rather than calling the
    # convolution; both give the same image, for every padding, resizing and normalisation.
    if build == "init":
        kwargs = dict(out_channels=2, output_activation=fd.Sigmoid(), upsampling="nearest")
        net = _init(jr.key(5), padding_mode=padding_mode, **kwargs)
    else:
        net = _decoder(jr.key(6), padding_mode=padding_mode, normalise=True, upsampling="bilinear")
    image = eqx.filter_jit(lambda g: g.image())(net)
    np.testing.assert_allclose(image, _reference_image(net), rtol=1e-12, atol=1e-14)


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


# -- the deepinv-shaped decoder -----------------------------------------------------------------
DECODER = dict(channels=4, layers=3, input_size=(2, 2), dtype=jnp.float64)


@eqx.filter_jit
def _decoder(key, shape=(8, 8), **kwargs):
    return fd.ConvDIP.decoder(key, shape, **(DECODER | kwargs))


def _deepinv_sizes(image_shape, input_size, layers):
    # deepinv's ConvDecoder: ⌈sⁿ·in⌉ for n = 1 … layers − 2, then the image size, s the
    # (layers − 1)-th root of the zoom; its last convolution runs at full size once more.
    scale = [(o / i) ** (1.0 / (layers - 1)) for o, i in zip(image_shape, input_size)]
    hidden = [
        tuple(int(np.ceil(s**n * i)) for s, i in zip(scale, input_size))
        for n in range(1, layers - 1)
    ]
    return tuple(hidden) + (tuple(image_shape),) * 2


def test_decoder_has_deepinv_sizes_and_the_documented_parameter_count():
    # The documented 64 × 64 configuration: 7·(64·64·9 + 64) + 64 + 1 parameters, deepinv's
    # 259 457 less its 7·2·64 batch-norm scales and shifts. Built eagerly: no compilation.
    net = fd.ConvDIP.decoder(jr.key(0), (64, 64), dtype=jnp.float32)
    assert net.sizes == _deepinv_sizes((64, 64), (4, 4), 7)
    assert net.sizes == ((7, 7), (11, 11), (16, 16), (26, 26), (41, 41), (64, 64), (64, 64))
    assert net.num_parameters() == 7 * (64 * 64 * 9 + 64) + 65 == 259_457 - 7 * 2 * 64
    assert net.input.shape == (64, 7, 7) and net.upsampling == "nearest"
    # He's variance 2/fan_in for the weights, PyTorch's U(±1/√fan_in) for the biases.
    w, b = net.convs[3].weight, net.convs[3].bias
    assert float(jnp.var(w)) == pytest.approx(2 / (64 * 9), rel=0.02)
    assert float(jnp.max(jnp.abs(b))) <= 1 / np.sqrt(64 * 9)
    normalised = fd.ConvDIP.decoder(jr.key(0), (64, 64), normalise=True, dtype=jnp.float32)
    assert normalised.num_parameters() == 259_457
    odd = fd.ConvDIP.decoder(jr.key(0), (20, 12), channels=2, layers=4, input_size=(3, 2))
    assert odd.sizes == _deepinv_sizes((20, 12), (3, 2), 4)
    small = _decoder(jr.key(1))
    assert small.sizes == ((4, 4), (8, 8), (8, 8))
    _check_shapes_and_gradients(small, (8, 8), 1, jnp.float64)
    assert small.num_parameters() == 3 * (4 * 4 * 9 + 4) + 5


def test_decoder_jvp_matches_finite_differences():
    # Nearest-neighbour resizing and softplus keep the map smooth: the Jacobian product agrees
    # with central differences to O(h²), and so does the derivative of the Jacobian product
    # (the second derivative along v, which a ReLU network would not have).
    net = _decoder(jr.key(2))
    trained, frozen = net.partition()
    flat0, unravel = ravel_pytree(trained)

    def g(flat):
        return eqx.combine(unravel(flat), frozen)()

    v = jr.normal(jr.key(3), flat0.shape, jnp.float64)
    h = 1e-5

    @jax.jit
    def products(flat):
        def jv(f):
            return jax.jvp(g, (f,), (v,))[1]

        fd_jv = (g(flat + h * v) - g(flat - h * v)) / (2 * h)
        hvv = jax.jvp(jv, (flat,), (v,))[1]
        fd_hvv = (jv(flat + h * v) - jv(flat - h * v)) / (2 * h)
        return jv(flat), fd_jv, hvv, fd_hvv

    jv, fd_jv, hvv, fd_hvv = products(flat0)
    np.testing.assert_allclose(jv, fd_jv, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(hvv, fd_hvv, rtol=1e-5, atol=1e-7)
    assert float(jnp.linalg.norm(hvv)) > 1e-3  # a genuinely curved map, not a linear one


def test_adam_on_the_decoder_lowers_the_loss():
    # Compressed sensing of an 8 × 8 image (m = n/2) with 5% noise: Adam at lr 10⁻² through
    # solve lowers the loss at least tenfold in 150 steps.
    image = jnp.outer(jnp.linspace(0, 1, 8), jnp.linspace(1, 0.2, 8))
    operator = fd.CompressedSensing.gaussian(jr.key(4), (8, 8), 32, dtype=jnp.float64)
    x = image.reshape(-1)
    problem = fd.InverseProblem(
        operator, x, noise_std=fd.relative_noise_std(operator, x, 0.05), key=jr.key(5)
    )
    objective = fd.Objective(problem, _decoder(jr.key(6)))
    adam = fd.OptaxBaseline(optax.adam, learning_rate=1e-2)
    traj = fd.solve(objective, adam, num_steps=150, num_saves=4, save_params=False)
    assert float(traj.final_loss) < 0.1 * float(traj.initial_loss)


def test_normalised_decoder_standardises_each_channel_like_batch_norm_on_one_image():
    # deepinv's BatchNorm2d in training mode on a batch of one: each channel minus its mean
    # over the pixels, over √(biased variance + 10⁻⁵), times a scale plus a shift; redone here
    # by hand in NumPy, with random scales and shifts so that they matter.
    net = _decoder(jr.key(7), normalise=True)
    keys = jr.split(jr.key(8), 2 * len(net.norms))
    net = eqx.tree_at(
        lambda g: [leaf for n in g.norms for leaf in (n.weight, n.bias)],
        net,
        [jr.normal(k, (4,), jnp.float64) for k in keys],
    )
    h = np.asarray(net.input)
    for i, (conv, norm) in enumerate(zip(net.convs, net.norms)):
        if i > 0 and net.sizes[i] != net.sizes[i - 1]:
            h = np.asarray(jax.image.resize(h, (4, *net.sizes[i]), "nearest"))
        h = np.logaddexp(np.asarray(conv(jnp.asarray(h))), 0)
        mean, var = h.mean((1, 2), keepdims=True), h.var((1, 2), keepdims=True)
        scale, shift = np.asarray(norm.weight)[:, None, None], np.asarray(norm.bias)[:, None, None]
        h = (h - mean) / np.sqrt(var + 1e-5) * scale + shift
    expected = np.asarray(net.head(jnp.asarray(h)))[0]
    np.testing.assert_allclose(eqx.filter_jit(lambda g: g.image())(net), expected, rtol=1e-10)


def test_decoder_rejects_bad_arguments():
    with pytest.raises(ValueError, match="upsampling"):
        fd.ConvDIP.decoder(jr.key(0), (8, 8), upsampling="bicubic")
    with pytest.raises(ValueError, match="upsampling"):
        fd.ConvDIP.init(jr.key(0), image_shape=(8, 8), upsampling="area")
    with pytest.raises(ValueError, match="layers"):
        fd.ConvDIP.decoder(jr.key(0), (8, 8), layers=1)
    with pytest.raises(ValueError, match="input_size"):
        fd.ConvDIP.decoder(jr.key(0), (8, 8), input_size=(16, 4))
    with pytest.raises(ValueError, match="weight_scale"):
        fd.ConvDIP.decoder(jr.key(0), (8, 8), weight_scale=-1.0)
