"""PSNR, SSIM and relative error against scikit-image and closed forms."""

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest


skimage_metrics = pytest.importorskip("skimage.metrics")
skimage_data = pytest.importorskip("skimage.data")

import flowdip as fd  # noqa: E402


def _camera(size=48):
    import skimage.transform

    image = skimage_data.camera().astype(np.float64) / 255.0
    return skimage.transform.resize(image, (size, size), anti_aliasing=True)


def _pairs():
    ref = _camera()
    rng = np.random.default_rng(0)
    noisy = np.clip(ref + 0.05 * rng.standard_normal(ref.shape), 0, 1)
    shifted = np.roll(ref, 2, axis=1)
    random = rng.uniform(size=ref.shape)
    return ref, {"noisy": noisy, "shifted": shifted, "random": random, "same": ref}


@pytest.mark.parametrize("which", ["noisy", "shifted", "random", "same"])
def test_psnr_and_ssim_match_scikit_image(which):
    ref, estimates = _pairs()
    est = estimates[which]
    ours_psnr = float(fd.psnr(jnp.asarray(est), jnp.asarray(ref), 1.0))
    ours_ssim = float(fd.ssim(jnp.asarray(est), jnp.asarray(ref), 1.0))
    ref_ssim = skimage_metrics.structural_similarity(est, ref, data_range=1.0)
    assert ours_ssim == pytest.approx(ref_ssim, abs=1e-12)
    if which == "same":
        assert ours_psnr == np.inf and ours_ssim == pytest.approx(1.0, abs=1e-14)
    else:
        ref_psnr = skimage_metrics.peak_signal_noise_ratio(ref, est, data_range=1.0)
        assert ours_psnr == pytest.approx(ref_psnr, rel=1e-12)


@pytest.mark.parametrize("win_size, data_range", [(3, 1.0), (11, 2.0)])
def test_ssim_options_match_scikit_image(win_size, data_range):
    ref, estimates = _pairs()
    est = estimates["noisy"] * data_range
    ours = float(
        fd.ssim(jnp.asarray(est), jnp.asarray(ref * data_range), data_range, win_size=win_size)
    )
    theirs = skimage_metrics.structural_similarity(
        est, ref * data_range, data_range=data_range, win_size=win_size
    )
    assert ours == pytest.approx(theirs, abs=1e-12)


def test_psnr_of_a_constant_offset_is_closed_form():
    ref = jnp.zeros((8, 8))
    for delta in (0.1, 0.01):
        assert float(fd.psnr(ref + delta, ref, 1.0)) == pytest.approx(-20 * np.log10(delta))
    assert float(fd.psnr(ref + 0.5, ref, 255.0)) == pytest.approx(20 * np.log10(255 / 0.5))


def test_metrics_broadcast_over_saves_and_seeds():
    ref = jnp.asarray(_camera(16))
    batch = ref[None, None] + 0.1 * jr.normal(jr.key(0), (3, 2, 16, 16), jnp.float64)
    psnr, ssim = fd.psnr(batch, ref), fd.ssim(batch, ref)
    assert psnr.shape == ssim.shape == (3, 2)
    for i in range(3):
        for j in range(2):
            assert float(psnr[i, j]) == pytest.approx(float(fd.psnr(batch[i, j], ref)), rel=1e-14)
            assert float(ssim[i, j]) == pytest.approx(float(fd.ssim(batch[i, j], ref)), rel=1e-14)
    flat = batch.reshape(3, 2, 256)
    out = fd.image_metrics(flat, ref)
    rel = np.linalg.norm(
        np.asarray(flat) - np.asarray(ref).reshape(1, 1, -1), axis=-1
    ) / np.linalg.norm(np.asarray(ref))
    np.testing.assert_allclose(out["relative_error"], rel, rtol=1e-13)
    np.testing.assert_allclose(out["psnr"], psnr, rtol=1e-14)
    np.testing.assert_allclose(out["ssim"], ssim, rtol=1e-14)


def test_metrics_reject_bad_arguments():
    ref = jnp.zeros((8, 8))
    with pytest.raises(ValueError, match="data_range"):
        fd.psnr(ref, ref, 0.0)
    with pytest.raises(ValueError, match="win_size"):
        fd.ssim(ref, ref, win_size=9)
    with pytest.raises(ValueError, match="pixels"):
        fd.image_metrics(jnp.zeros((2, 63)), ref)
