"""Image quality metrics in JAX: PSNR, SSIM and the relative recovery error.

SSIM follows Wang et al. (2004) with the conventions of `skimage.metrics.structural_similarity`
under its defaults (a 7 × 7 uniform window, sample covariances, `K₁ = 0.01`, `K₂ = 0.03`,
the mean over the windows that fit inside the image), so the two agree to round-off; the tests
check this. Every metric broadcasts over leading axes (save times, seeds).
"""

import functools
import math

import jax
import jax.numpy as jnp

from ._typing import Array, checked, Float


def _psnr(x, ref, data_range):
    mse = jnp.mean((x - ref) ** 2)
    return 10 * jnp.log10(data_range**2 / mse)


def _box_mean(image, win):
    total = jax.lax.reduce_window(
        image, jnp.zeros((), image.dtype), jax.lax.add, win, (1, 1), "VALID"
    )
    return total / (win[0] * win[1])


def _ssim(x, ref, data_range, win_size, k1, k2):
    win = (win_size, win_size)
    cov_norm = win_size**2 / (win_size**2 - 1)  # unbiased (sample) covariances
    ux, uy = _box_mean(x, win), _box_mean(ref, win)
    vx = cov_norm * (_box_mean(x * x, win) - ux * ux)
    vy = cov_norm * (_box_mean(ref * ref, win) - uy * uy)
    vxy = cov_norm * (_box_mean(x * ref, win) - ux * uy)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return jnp.mean(s)


# One compiled program per shape and setting: op by op, each metric would compile a dozen
# small kernels, and a run's metrics (saves × seeds) would cost seconds of compilation.
@functools.partial(jax.jit, static_argnames=("data_range",))
def _psnr_all(image, reference, data_range):
    fn = jnp.vectorize(lambda a: _psnr(a, reference, data_range), signature="(h,w)->()")
    return fn(image)


@functools.partial(jax.jit, static_argnames=("data_range", "win_size", "k1", "k2"))
def _ssim_all(image, reference, data_range, win_size, k1, k2):
    fn = jnp.vectorize(
        lambda a: _ssim(a, reference, data_range, win_size, k1, k2), signature="(h,w)->()"
    )
    return fn(image)


@jax.jit
def _relative_error_all(estimate, reference):
    ref = reference.reshape((1,) * (estimate.ndim - 1) + reference.shape)
    return jnp.linalg.norm(estimate - ref, axis=-1) / jnp.linalg.norm(reference)


def _check_range(data_range):
    if not (math.isfinite(data_range) and data_range > 0):
        raise ValueError(f"data_range must be a finite number > 0; got {data_range!r}.")


@checked
def psnr(
    image: Float[Array, "*batch h w"], reference: Float[Array, "h w"], data_range: float = 1.0
) -> Float[Array, "*batch"]:
    """Peak signal-to-noise ratio `10 log₁₀(R²/MSE)` in decibels.

    **Arguments:**

    - `image`: the estimate(s), shape `(..., h, w)`.
    - `reference`: the ground truth, shape `(h, w)`.
    - `data_range`: `R`, the range of the reference's values (1 for images in `[0, 1]`).

    **Returns:** the PSNR of each image, shape `(...)`; `inf` for an exact match.
    """
    _check_range(data_range)
    return _psnr_all(image, reference, float(data_range))


@checked
def ssim(
    image: Float[Array, "*batch h w"],
    reference: Float[Array, "h w"],
    data_range: float = 1.0,
    *,
    win_size: int = 7,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Float[Array, "*batch"]:
    """Mean structural similarity (Wang et al. 2004), as `skimage.metrics.structural_similarity`
    computes it by default.

    **Arguments:**

    - `image`: the estimate(s), shape `(..., h, w)`.
    - `reference`: the ground truth, shape `(h, w)`.
    - `data_range`: the range of the values (1 for images in `[0, 1]`).
    - `win_size`: the side of the uniform window (odd, at most `min(h, w)`).
    - `k1`, `k2`: the stabilising constants.

    **Returns:** the mean SSIM of each image over the windows that fit, shape `(...)`; 1 for an
    exact match.
    """
    _check_range(data_range)
    h, w = reference.shape
    if win_size % 2 == 0 or win_size < 3 or win_size > min(h, w):
        raise ValueError(
            f"win_size must be odd, >= 3 and at most min(h, w) = {min(h, w)}; got {win_size}."
        )
    return _ssim_all(image, reference, float(data_range), int(win_size), float(k1), float(k2))


@checked
def relative_error(
    estimate: Float[Array, "*batch n"], reference: Float[Array, " n"]
) -> Float[Array, "*batch"]:
    """The relative recovery error `‖x − x̄‖/‖x̄‖` (flattened signals or images).

    **Arguments:**

    - `estimate`: the estimate(s), shape `(..., n)`.
    - `reference`: the ground truth `x̄`, shape `(n,)`.

    **Returns:** one error per estimate, shape `(...)`.
    """
    return _relative_error_all(estimate, reference)


@checked
def image_metrics(
    signals: Float[Array, "*batch n"],
    reference: Float[Array, "h w"],
    data_range: float = 1.0,
) -> dict[str, Array]:
    """PSNR, SSIM and relative error of flattened estimates, e.g. a trajectory's saved signals
    `(T, n)` or a batch over seeds `(S, T, n)`.

    **Arguments:**

    - `signals`: estimates flattened row-major, shape `(..., h·w)`.
    - `reference`: the ground-truth image `(h, w)`.
    - `data_range`: the range of the values.

    **Returns:** `{"psnr", "ssim", "relative_error"}`, each of shape `(...)`.
    """
    h, w = reference.shape
    if signals.shape[-1] != h * w:
        raise ValueError(
            f"signals have {signals.shape[-1]} entries per estimate but the reference image "
            f"{reference.shape} has {h * w} pixels."
        )
    images = signals.reshape(signals.shape[:-1] + (h, w))
    return {
        "psnr": psnr(images, reference, data_range),
        "ssim": ssim(images, reference, data_range),
        "relative_error": relative_error(signals, reference.reshape(-1)),
    }
