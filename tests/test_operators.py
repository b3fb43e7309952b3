"""Imaging operators: adjoints (dot-product test), FFT blur against direct and scipy
convolution, norms and conditioning against a dense SVD, noise levels."""

import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np
import pytest
import scipy.ndimage

import flowdip as fd


SHAPE = (9, 12)


def _operators():
    key = jr.key(0)
    mask = np.zeros(SHAPE, bool)
    mask[::2, 1::3] = True
    return {
        "cs": fd.CompressedSensing.gaussian(key, SHAPE, 40),
        "blur-fft": fd.Blur.gaussian(SHAPE, 1.2),
        "blur-direct": fd.Blur.gaussian(SHAPE, 1.2, method="direct"),
        "blur-asym": fd.Blur(jr.uniform(jr.key(1), (3, 5), jnp.float64), SHAPE),
        "inpaint-random": fd.Inpainting.random(key, SHAPE, 0.4),
        "inpaint-mask": fd.Inpainting.from_mask(mask),
        "denoise": fd.Denoising(SHAPE),
    }


@pytest.mark.parametrize("name", list(_operators()))
def test_adjoint_passes_the_dot_product_test(name):
    op = _operators()[name]
    assert isinstance(op, lx.AbstractLinearOperator)
    n, m = op.in_size(), op.out_size()
    assert n == SHAPE[0] * SHAPE[1]
    kx, ky = jr.split(jr.key(7))
    for i in range(3):
        x = jr.normal(jr.fold_in(kx, i), (n,), jnp.float64)
        y = jr.normal(jr.fold_in(ky, i), (m,), jnp.float64)
        lhs = jnp.vdot(op.mv(x), y)
        rhs = jnp.vdot(x, op.transpose().mv(y))
        assert abs(float(lhs - rhs)) <= 1e-12 * float(jnp.linalg.norm(x) * jnp.linalg.norm(y))
    # The transpose's transpose is the operator, and the dense forms agree.
    np.testing.assert_allclose(op.T.as_matrix(), op.as_matrix().T, atol=1e-14)
    assert op.T.T is op


@pytest.mark.parametrize("name", list(_operators()))
def test_norm_and_conditioning_match_a_dense_svd(name):
    op = _operators()[name]
    s = np.linalg.svd(np.asarray(op.as_matrix()), compute_uv=False)
    s = s[: min(op.out_size(), op.in_size())]
    np.testing.assert_allclose(np.asarray(op.singular_values()), s, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(float(op.norm()), s[0], rtol=1e-10)
    np.testing.assert_allclose(float(op.condition_number()), s[0] / s[-1], rtol=1e-8)


@pytest.mark.parametrize("kernel_shape", [(3, 3), (5, 3), (7, 7)])
def test_blur_fft_equals_direct_and_scipy_circular_convolution(kernel_shape):
    kernel = jr.uniform(jr.key(3), kernel_shape, jnp.float64)
    image = jr.normal(jr.key(4), SHAPE, jnp.float64)
    fft = fd.Blur(kernel, SHAPE, "fft").forward(image).reshape(SHAPE)
    direct = fd.Blur(kernel, SHAPE, "direct").forward(image).reshape(SHAPE)
    # scipy's convolve centres the kernel at its middle element and wraps around: the
    # same circular convolution, computed independently.
    ref = scipy.ndimage.convolve(np.asarray(image), np.asarray(kernel), mode="wrap")
    np.testing.assert_allclose(fft, ref, atol=1e-13)
    np.testing.assert_allclose(direct, ref, atol=1e-13)


def test_gaussian_blur_is_normalised_and_ill_conditioned():
    op = fd.Blur.gaussian((32, 32), 1.5)
    assert abs(float(jnp.sum(op.kernel)) - 1) < 1e-14
    # A constant image is left unchanged; the highest frequency is damped by ~exp(−σ²π²·…).
    np.testing.assert_allclose(op.mv(jnp.ones(32 * 32)), 1.0, atol=1e-13)
    assert float(op.norm()) == pytest.approx(1.0, abs=1e-12)
    assert float(op.condition_number()) > 1e6


def test_compressed_sensing_scaling_and_marchenko_pastur_conditioning():
    m, shape = 200, (20, 20)
    op = fd.CompressedSensing.gaussian(jr.key(5), shape, m)
    # Entries have variance 1/m; the spectrum lies near [√(n/m) − 1, √(n/m) + 1].
    assert float(jnp.mean(op.matrix**2)) * m == pytest.approx(1.0, rel=0.02)
    ratio = np.sqrt(400 / m)
    s = np.asarray(op.singular_values())
    assert abs(s[0] - (ratio + 1)) < 0.25 and abs(s[-1] - (ratio - 1)) < 0.25


def test_inpainting_mask_and_indices_agree():
    mask = np.zeros(SHAPE, bool)
    mask[1, 2] = mask[4, 7] = mask[8, 11] = True
    op = fd.Inpainting.from_mask(mask)
    np.testing.assert_array_equal(np.asarray(op.mask), mask)
    image = jnp.arange(SHAPE[0] * SHAPE[1], dtype=jnp.float64).reshape(SHAPE)
    np.testing.assert_array_equal(op.forward(image), np.asarray(image)[mask])


def test_operators_plug_into_inverse_problem_with_relative_noise():
    op = fd.Blur.gaussian((16, 16), 1.0)
    x = jr.uniform(jr.key(6), (256,), jnp.float64)
    std = fd.relative_noise_std(op, x, 0.1)
    rms = float(jnp.linalg.norm(op.mv(x)) / 16)
    assert std == pytest.approx(0.1 * rms, rel=1e-12)
    problem = fd.InverseProblem(op, x, noise_std=std, key=jr.key(8))
    np.testing.assert_allclose(problem.y - problem.noise, op.mv(x), atol=1e-14)
    assert float(jnp.std(problem.noise)) == pytest.approx(std, rel=0.15)
    np.testing.assert_allclose(problem.adjoint(problem.y), op.T.mv(problem.y))


def test_operators_reject_bad_arguments():
    with pytest.raises(ValueError, match="odd"):
        fd.Blur(jnp.ones((2, 3)), SHAPE)
    with pytest.raises(ValueError, match="does not fit"):
        fd.Blur(jnp.ones((11, 3)), SHAPE)
    with pytest.raises(ValueError, match="method"):
        fd.Blur(jnp.ones((3, 3)), SHAPE, "fourier")
    with pytest.raises(ValueError, match="distinct"):
        fd.Inpainting(jnp.asarray([0, 0, 3]), SHAPE)
    with pytest.raises(ValueError, match="distinct"):
        fd.Inpainting(jnp.asarray([0, 500]), SHAPE)
    with pytest.raises(ValueError, match="image_shape"):
        fd.Denoising((0, 4))
    with pytest.raises(ValueError, match="columns"):
        fd.CompressedSensing(jnp.ones((3, 10)), SHAPE)
    with pytest.raises(ValueError, match="sigma"):
        fd.Blur.gaussian(SHAPE, -1.0)
    with pytest.raises(ValueError, match="fraction"):
        fd.Inpainting.random(jr.key(0), SHAPE, 0.0)
