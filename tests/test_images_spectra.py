"""The images' coefficients in the operators' singular bases, against independent
computations (dense SVD, pseudo-inverse projections, the FFT of `A x̄`)."""

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import flowdip as fd
from flowdip.experiments._images_spectra import Spectrum, spectrum


def _image(size, seed=0):
    return np.random.default_rng(seed).uniform(size=(size, size))


def test_ideal_error_closed_form():
    # σ = (2, 1), |c| = (1, 1), ‖P_ker x̄‖² = 1, s = 1: min(1, 1/4) + min(1, 1) = 5/4 of
    # ‖x̄‖² = 3 in the row space, 1 of 3 in the kernel.
    spec = Spectrum(np.array([2.0, 1.0]), np.array([1.0, 1.0]), 1.0)
    row, kernel = spec.ideal_error(1.0)
    assert row == pytest.approx(np.sqrt(1.25 / 3), rel=1e-12)
    assert kernel == pytest.approx(np.sqrt(1 / 3), rel=1e-12)
    # σ|c| = (2, 1): only the second is below s = 1.5, and it holds half the row energy.
    assert spec.drowned(1.5) == pytest.approx(0.5)
    assert spec.ideal_error(0.0)[0] == 0.0


def test_compressed_sensing_spectrum_splits_row_space_and_kernel():
    size = 6
    op = fd.CompressedSensing.gaussian(jr.key(0), (size, size), 14, dtype=jnp.float64)
    x = _image(size)
    spec = spectrum(op, x)
    A = np.asarray(op.as_matrix())
    np.testing.assert_allclose(spec.sigma, np.linalg.svd(A, compute_uv=False), rtol=1e-10)
    assert np.all(np.diff(spec.sigma) <= 0)
    row = np.linalg.pinv(A) @ A @ x.ravel()  # the projection onto the row space
    np.testing.assert_allclose(np.sum(spec.coefficients**2), row @ row, rtol=1e-10)
    kernel = x.ravel() - row
    np.testing.assert_allclose(spec.kernel_energy, kernel @ kernel, rtol=1e-8)
    # σ_i |v_iᵀx̄| = |u_iᵀ A x̄|: the clean data's coefficients, whose squares sum to ‖A x̄‖².
    ax = A @ x.ravel()
    np.testing.assert_allclose(np.sum(spec.picard() ** 2), ax @ ax, rtol=1e-10)


def test_blur_spectrum_is_the_fourier_one():
    size = 8
    op = fd.Blur.gaussian((size, size), 1.2, dtype=jnp.float64)
    x = _image(size, 1)
    spec = spectrum(op, x)
    # Its singular values are those of the dense matrix, and no kernel.
    dense = np.linalg.svd(np.asarray(op.as_matrix()), compute_uv=False)
    np.testing.assert_allclose(spec.sigma, dense, rtol=1e-8, atol=1e-14)
    assert spec.kernel_energy == 0.0
    np.testing.assert_allclose(np.sum(spec.coefficients**2), np.sum(x**2), rtol=1e-12)
    # σ_i |c_i| are the moduli of the unitary DFT of the blurred image A x̄, pair by pair.
    blurred = np.asarray(op.forward(jnp.asarray(x))).reshape(size, size)
    data = np.abs(np.fft.fft2(blurred, norm="ortho")).ravel()
    np.testing.assert_allclose(np.sort(spec.picard()), np.sort(data), rtol=1e-8, atol=1e-14)
    # Drowned energy: the frequencies whose clean data are below the noise.
    # A threshold halfway (geometrically) across the widest gap between sorted values of the
    # middle half, so that round-off cannot move a coefficient across it.
    values = np.sort(data)[len(data) // 4 : 3 * len(data) // 4]
    gap = int(np.argmax(values[1:] / values[:-1]))
    s = float(np.sqrt(values[gap] * values[gap + 1]))
    energy = np.abs(np.fft.fft2(x, norm="ortho")).ravel() ** 2
    expected = energy[data < s].sum() / energy.sum()
    assert spec.drowned(s) == pytest.approx(expected, rel=1e-10)
