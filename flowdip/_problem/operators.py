"""Matrix-free imaging operators `A: ℝ^{h×w} → ℝᵐ` as lineax operators with explicit adjoints.

An image `x` of shape `(h, w)` enters flattened (row-major, `n = h·w`), so that every
operator plugs into [`flowdip.InverseProblem`][] and the objective's generic path unchanged.
Each operator knows its spectral norm `‖A‖` and, where that is cheap, all its singular values
(hence its conditioning): closed forms for blur, inpainting and denoising, an `m × m`
eigendecomposition for compressed sensing.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np

from .._typing import Array, Bool, checked, Float, Int, PRNGKeyArray
from .blur import Blur as Blur
from .imaging import AbstractImagingOperator as AbstractImagingOperator, dtype_name, image_shape_of


# -- the operators ------------------------------------------------------------------------------
class CompressedSensing(AbstractImagingOperator):
    """Compressed sensing of an image: `A x = M vec(x)` with a dense `(m, n)` matrix `M`.

    [`flowdip.CompressedSensing.gaussian`][] draws `M` with i.i.d. N(0, 1/m) entries; for
    `m < n` its singular values fill `[√(n/m) − 1, √(n/m) + 1]` (Marchenko–Pastur), so
    `κ ≈ (1 + √(m/n))/(1 − √(m/n))`: about 5.8 for `m = n/2`, whatever the image.

    **Fields:**

    - `matrix`: `M`, shape `(m, h·w)`.
    - `image_shape`: `(h, w)`.
    """

    matrix: Float[Array, "m n"]
    image_shape: tuple[int, int] = eqx.field(static=True, converter=image_shape_of)

    def __check_init__(self):
        if self.matrix.ndim != 2 or self.matrix.shape[1] != math.prod(self.image_shape):
            raise ValueError(
                f"matrix has shape {self.matrix.shape} but image_shape={self.image_shape}: it "
                f"must have {math.prod(self.image_shape)} columns."
            )

    @classmethod
    @checked
    def gaussian(
        cls, key: PRNGKeyArray, image_shape: tuple[int, int], m: int, *, dtype=None
    ) -> "CompressedSensing":
        """`m` Gaussian measurements of an image: i.i.d. N(0, 1/m) entries.

        **Arguments:**

        - `key`: PRNG key.
        - `image_shape`: `(h, w)`.
        - `m`: the number of measurements (`≥ 1`).
        - `dtype`: floating dtype (default: JAX's default float).
        """
        image_shape = image_shape_of(image_shape)
        if isinstance(m, bool) or m < 1:
            raise ValueError(f"m must be an integer >= 1; got m={m!r}.")
        dtype = jnp.result_type(float) if dtype is None else dtype
        M = jr.normal(key, (m, math.prod(image_shape)), dtype) / math.sqrt(m)
        return cls(M, image_shape)

    @property
    def num_measurements(self) -> int:
        """`m`."""
        return self.matrix.shape[0]

    @property
    def dtype(self):
        """The matrix's dtype."""
        return self.matrix.dtype

    def forward(self, image: Float[Array, "h w"]) -> Float[Array, " m"]:
        """`M vec(x)`."""
        return self.matrix @ image.reshape(-1)

    def adjoint(self, r: Float[Array, " m"]) -> Float[Array, "h w"]:
        """`Mᵀ r` as an image."""
        return (r @ self.matrix).reshape(self.image_shape)

    def as_matrix(self) -> Float[Array, "m n"]:
        """`M` itself."""
        return self.matrix

    def singular_values(self) -> Float[Array, " s"]:
        """From the eigenvalues of the smaller Gram matrix (`O(min(m,n)²·max(m,n))`)."""
        M = self.matrix
        gram = M @ M.T if M.shape[0] <= M.shape[1] else M.T @ M
        lam = jnp.linalg.eigvalsh(gram)[::-1]
        return jnp.sqrt(jnp.maximum(lam, 0))


class Inpainting(AbstractImagingOperator):
    """Observation of a subset of the pixels: `A x = (x_i)_{i ∈ Ω}`.

    `A Aᵀ = I`, so all its singular values are 1: perfectly conditioned on its range, with a
    kernel (the missing pixels) that only the prior can fill.

    **Fields:**

    - `indices`: the observed pixels `Ω` as flat (row-major) indices, shape `(m,)`, distinct.
    - `image_shape`: `(h, w)`.
    - `float_dtype`: the dtype of images and measurements (default: JAX's default float).
    """

    indices: Int[Array, " m"]
    image_shape: tuple[int, int] = eqx.field(static=True, converter=image_shape_of)
    float_dtype: str | None = eqx.field(static=True, default=None, converter=dtype_name)

    def __check_init__(self):
        n = math.prod(self.image_shape)
        if self.indices.ndim != 1 or self.indices.shape[0] < 1:
            raise ValueError(f"indices must be a non-empty 1-d array; got {self.indices.shape}.")
        if isinstance(self.indices, jax.core.Tracer):
            return
        idx = np.asarray(self.indices)
        if idx.min() < 0 or idx.max() >= n or len(np.unique(idx)) != len(idx):
            raise ValueError(
                f"indices must be distinct pixel indices in [0, {n}); got values in "
                f"[{idx.min()}, {idx.max()}] with {len(idx) - len(np.unique(idx))} repeats."
            )

    @classmethod
    def from_mask(cls, mask: Bool[Array, "h w"] | np.ndarray, *, dtype=None) -> "Inpainting":
        """The pixels where `mask` is `True` are observed (a concrete mask, not traced)."""
        mask = np.asarray(mask, dtype=bool)
        if mask.ndim != 2:
            raise ValueError(f"mask must be 2-d (h, w); got shape {mask.shape}.")
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            raise ValueError("mask observes no pixel.")
        return cls(jnp.asarray(idx, jnp.int32), mask.shape, dtype)

    @classmethod
    def random(
        cls, key: PRNGKeyArray, image_shape: tuple[int, int], fraction: float, *, dtype=None
    ) -> "Inpainting":
        """Observes `round(fraction · n)` pixels chosen uniformly without replacement."""
        image_shape = image_shape_of(image_shape)
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1]; got fraction={fraction!r}.")
        n = math.prod(image_shape)
        m = max(1, round(fraction * n))
        idx = jnp.sort(jr.permutation(key, n)[:m]).astype(jnp.int32)
        return cls(idx, image_shape, dtype)

    @property
    def num_measurements(self) -> int:
        """`m = |Ω|`."""
        return self.indices.shape[0]

    @property
    def dtype(self):
        """`float_dtype`."""
        return jnp.dtype(self.float_dtype)

    @property
    def mask(self) -> Bool[Array, "h w"]:
        """The observed pixels as a boolean image."""
        flat = jnp.zeros(self.num_pixels, bool).at[self.indices].set(True)
        return flat.reshape(self.image_shape)

    def forward(self, image: Float[Array, "h w"]) -> Float[Array, " m"]:
        """The observed pixel values."""
        return image.reshape(-1)[self.indices]

    def adjoint(self, r: Float[Array, " m"]) -> Float[Array, "h w"]:
        """The observed values put back in place, zeros elsewhere."""
        flat = jnp.zeros(self.num_pixels, r.dtype).at[self.indices].set(r)
        return flat.reshape(self.image_shape)

    def singular_values(self) -> Float[Array, " s"]:
        """All ones (`A Aᵀ = I`)."""
        return jnp.ones(self.num_measurements, self.dtype)


class Denoising(AbstractImagingOperator):
    """The identity: every pixel observed once, `A = I` (`‖A‖ = κ = 1`).

    **Fields:**

    - `image_shape`: `(h, w)`.
    - `float_dtype`: the dtype of images and measurements (default: JAX's default float).
    """

    image_shape: tuple[int, int] = eqx.field(static=True, converter=image_shape_of)
    float_dtype: str | None = eqx.field(static=True, default=None, converter=dtype_name)

    @property
    def num_measurements(self) -> int:
        """`m = n`."""
        return self.num_pixels

    @property
    def dtype(self):
        """`float_dtype`."""
        return jnp.dtype(self.float_dtype)

    def forward(self, image: Float[Array, "h w"]) -> Float[Array, " m"]:
        """`x`, flattened."""
        return image.reshape(-1)

    def adjoint(self, r: Float[Array, " m"]) -> Float[Array, "h w"]:
        """`r` as an image."""
        return r.reshape(self.image_shape)

    def singular_values(self) -> Float[Array, " s"]:
        """All ones."""
        return jnp.ones(self.num_pixels, self.dtype)


@checked
def relative_noise_std(
    operator: lx.AbstractLinearOperator, x_true: Float[Array, " n"], level: float
) -> float:
    """The noise standard deviation `σ = level · ‖A x̄‖/√m`: a noise level relative to the
    root-mean-square of the clean measurements, so that operators of different scale get the
    same signal-to-noise ratio (`SNR = −20 log₁₀ level` dB).

    **Arguments:**

    - `operator`: the forward operator `A`.
    - `x_true`: the ground truth `x̄` (flattened image).
    - `level`: the relative level (`≥ 0`).

    **Returns:** `σ`, a Python float (pass it as `noise_std` to [`flowdip.InverseProblem`][]).
    """
    if not (math.isfinite(level) and level >= 0):
        raise ValueError(f"level must be a finite number >= 0; got level={level!r}.")
    clean = operator.mv(x_true)
    return float(level * jnp.linalg.norm(clean) / math.sqrt(clean.shape[0]))
