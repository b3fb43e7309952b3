"""Matrix-free imaging operators `A: ℝ^{h×w} → ℝᵐ` as lineax operators with explicit adjoints.

An image `x` of shape `(h, w)` enters flattened (row-major, `n = h·w`), so that every
operator plugs into [`flowdip.InverseProblem`][] and the objective's generic path unchanged.
Each operator knows its spectral norm `‖A‖` and, where that is cheap, all its singular values
(hence its conditioning): closed forms for blur, inpainting and denoising, an `m × m`
eigendecomposition for compressed sensing.
"""

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np
from lineax._operator import (
    conj,
    diagonal,
    has_unit_diagonal,
    is_diagonal,
    is_lower_triangular,
    is_negative_semidefinite,
    is_positive_semidefinite,
    is_symmetric,
    is_tridiagonal,
    is_upper_triangular,
    linearise,
    materialise,
    tridiagonal,
)

from .._typing import Array, Bool, checked, Float, Int, PRNGKeyArray


def _image_shape(shape) -> tuple[int, int]:
    shape = tuple(shape)
    if len(shape) != 2 or any(
        isinstance(s, bool) or not isinstance(s, int | np.integer) or s < 1 for s in shape
    ):
        raise ValueError(f"image_shape must be two positive integers (h, w); got {shape!r}.")
    return int(shape[0]), int(shape[1])


def _dtype_name(dtype) -> str:
    return jnp.dtype(jnp.result_type(float) if dtype is None else dtype).name


class AbstractImagingOperator(lx.AbstractLinearOperator):
    """A linear operator on images of shape `image_shape = (h, w)`, with its adjoint.

    Subclasses implement `forward` (image → measurements), `adjoint` (measurements → image),
    `num_measurements` and `singular_values`; everything lineax needs (`mv` on the flattened
    image, `transpose`, `as_matrix`, the structures) and the norm and conditioning follow.
    """

    image_shape: eqx.AbstractVar[tuple[int, int]]

    @abc.abstractmethod
    def forward(self, image: Float[Array, "h w"]) -> Float[Array, " m"]:
        """`A x` for an image `x` of shape `image_shape`."""

    @abc.abstractmethod
    def adjoint(self, r: Float[Array, " m"]) -> Float[Array, "h w"]:
        """`Aᵀ r`, an image of shape `image_shape`."""

    @property
    @abc.abstractmethod
    def num_measurements(self) -> int:
        """`m`, the number of measurements."""

    @property
    @abc.abstractmethod
    def dtype(self):
        """The floating dtype the operator computes in."""

    @abc.abstractmethod
    def singular_values(self) -> Float[Array, " s"]:
        """All `min(m, n)` singular values of `A`, in decreasing order."""

    # -- lineax ------------------------------------------------------------------------------
    @property
    def num_pixels(self) -> int:
        """`n = h·w`."""
        return self.image_shape[0] * self.image_shape[1]

    def mv(self, vector: Float[Array, " n"]) -> Float[Array, " m"]:
        """`A x` for a flattened image."""
        return self.forward(vector.reshape(self.image_shape))

    def transpose(self) -> lx.AbstractLinearOperator:
        """The adjoint `Aᵀ` as a lineax operator (measurements → flattened image)."""
        return _Adjoint(self)

    def as_matrix(self) -> Float[Array, "m n"]:
        """`A` as a dense `(m, n)` matrix, column by column (for small images and tests)."""
        eye = jnp.eye(self.num_pixels, dtype=self.dtype)
        return jax.vmap(self.mv, out_axes=1)(eye)

    def in_structure(self) -> jax.ShapeDtypeStruct:
        """A flattened image: shape `(n,)`."""
        return jax.ShapeDtypeStruct((self.num_pixels,), self.dtype)

    def out_structure(self) -> jax.ShapeDtypeStruct:
        """The measurements: shape `(m,)`."""
        return jax.ShapeDtypeStruct((self.num_measurements,), self.dtype)

    # -- conditioning --------------------------------------------------------------------------
    def norm(self) -> Float[Array, ""]:
        """The spectral norm `‖A‖ = σ_max(A)`."""
        return self.singular_values()[0]

    def sigma_min(self) -> Float[Array, ""]:
        """`σ_A`, the smallest singular value among the `min(m, n)` (THEORY.md §1.1; it is
        the smallest non-zero one when `A` has full rank, as all operators here do)."""
        return self.singular_values()[-1]

    def condition_number(self) -> Float[Array, ""]:
        """`κ(A) = σ_max/σ_A`: how much the inversion amplifies noise along the worst
        direction."""
        s = self.singular_values()
        return s[0] / s[-1]


class _Adjoint(lx.AbstractLinearOperator):
    """`Aᵀ` of an imaging operator: measurements → flattened image."""

    operator: AbstractImagingOperator

    def mv(self, vector):
        return self.operator.adjoint(vector).reshape(-1)

    def transpose(self):
        return self.operator

    def as_matrix(self):
        return self.operator.as_matrix().T

    def in_structure(self):
        return self.operator.out_structure()

    def out_structure(self):
        return self.operator.in_structure()


# lineax dispatches its structural queries by type; none of our operators is declared
# symmetric, triangular or definite (a blur with a symmetric kernel is, but claiming it would
# buy nothing here), and they are all linear and real already.
for _cls in (AbstractImagingOperator, _Adjoint):
    for _query in (
        is_symmetric,
        is_diagonal,
        is_tridiagonal,
        has_unit_diagonal,
        is_lower_triangular,
        is_upper_triangular,
        is_positive_semidefinite,
        is_negative_semidefinite,
    ):
        _query.register(_cls)(lambda operator: False)
    for _transform in (linearise, materialise, conj):
        _transform.register(_cls)(lambda operator: operator)
    diagonal.register(_cls)(lambda operator: jnp.diag(operator.as_matrix()))
    tridiagonal.register(_cls)(
        lambda operator: (
            jnp.diag(operator.as_matrix(), -1),
            jnp.diag(operator.as_matrix()),
            jnp.diag(operator.as_matrix(), 1),
        )
    )


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
    image_shape: tuple[int, int] = eqx.field(static=True, converter=_image_shape)

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
        image_shape = _image_shape(image_shape)
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


def _gaussian_kernel(sigma: float, radius: int, dtype) -> np.ndarray:
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-(t**2) / (2 * sigma**2))
    k = np.outer(g, g)
    return (k / k.sum()).astype(dtype)


class Blur(AbstractImagingOperator):
    """Circular convolution of an image with a point-spread function: `A x = k ⊛ x`.

    With circular (periodic) padding `A` is diagonalised by the 2-D DFT, `A = F⁻¹ diag(k̂) F`,
    so its singular values are `|k̂|` and its conditioning `max|k̂|/min|k̂|` comes for free. A
    Gaussian blur damps the highest frequencies by `exp(−σ²π²)`: already `~10⁻⁵` for
    `σ = 1.1` px, so blur is the ill-conditioned operator of the image experiments.

    **Fields:**

    - `kernel`: the point-spread function, shape `(2r+1, 2r+1)`, centred (odd sizes only).
    - `image_shape`: `(h, w)`; the kernel must fit, `2r+1 ≤ min(h, w)`.
    - `method`: `"fft"` (default; `O(n log n)`) or `"direct"` (a convolution with the wrapped
      image, `O(n r²)`); both compute the same operator.
    """

    kernel: Float[Array, "kh kw"]
    image_shape: tuple[int, int] = eqx.field(static=True, converter=_image_shape)
    method: str = eqx.field(static=True, default="fft")

    def __check_init__(self):
        kh, kw = self.kernel.shape
        if kh % 2 == 0 or kw % 2 == 0:
            raise ValueError(f"The kernel must have odd sizes (centred); got {self.kernel.shape}.")
        if kh > self.image_shape[0] or kw > self.image_shape[1]:
            raise ValueError(
                f"The kernel {self.kernel.shape} does not fit image_shape={self.image_shape}."
            )
        if self.method not in ("fft", "direct"):
            raise ValueError(f"method must be 'fft' or 'direct'; got {self.method!r}.")

    @classmethod
    def gaussian(
        cls,
        image_shape: tuple[int, int],
        sigma: float,
        *,
        radius: int | None = None,
        method: str = "fft",
        dtype=None,
    ) -> "Blur":
        """A normalised Gaussian blur of standard deviation `sigma` pixels.

        **Arguments:**

        - `image_shape`: `(h, w)`.
        - `sigma`: standard deviation in pixels (`> 0`).
        - `radius`: kernel half-width (default `⌈4σ⌉`, capped so that the kernel fits).
        - `method`: `"fft"` or `"direct"`.
        - `dtype`: floating dtype (default: JAX's default float).
        """
        image_shape = _image_shape(image_shape)
        if not (math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be a finite number > 0; got sigma={sigma!r}.")
        if radius is None:
            radius = min(math.ceil(4 * sigma), (min(image_shape) - 1) // 2)
        dtype = jnp.result_type(float) if dtype is None else dtype
        kernel = jnp.asarray(_gaussian_kernel(float(sigma), int(radius), dtype))
        return cls(kernel, image_shape, method)

    @property
    def num_measurements(self) -> int:
        """`m = n`: one blurred value per pixel."""
        return self.num_pixels

    @property
    def dtype(self):
        """The kernel's dtype."""
        return self.kernel.dtype

    def transfer_function(self) -> Array:
        """`k̂`, the 2-D DFT of the kernel placed with its centre at pixel `(0, 0)`."""
        kh, kw = self.kernel.shape
        full = jnp.zeros(self.image_shape, self.dtype).at[:kh, :kw].set(self.kernel)
        full = jnp.roll(full, (-(kh // 2), -(kw // 2)), axis=(0, 1))
        return jnp.fft.fft2(full)

    def _fft_apply(self, image, khat):
        return jnp.real(jnp.fft.ifft2(jnp.fft.fft2(image) * khat)).astype(self.dtype)

    def _direct_apply(self, image, kernel):
        kh, kw = kernel.shape
        padded = jnp.pad(image, ((kh // 2, kh // 2), (kw // 2, kw // 2)), mode="wrap")
        # conv_general_dilated correlates; flipping the kernel makes it a convolution.
        out = jax.lax.conv_general_dilated(
            padded[None, None], kernel[::-1, ::-1][None, None], (1, 1), "VALID"
        )
        return out[0, 0]

    def forward(self, image: Float[Array, "h w"]) -> Float[Array, " m"]:
        """`k ⊛ x` (circular), flattened."""
        if self.method == "fft":
            out = self._fft_apply(image, self.transfer_function())
        else:
            out = self._direct_apply(image, self.kernel)
        return out.reshape(-1)

    def adjoint(self, r: Float[Array, " m"]) -> Float[Array, "h w"]:
        """Correlation with `k`: convolution with the flipped kernel, `k̂` conjugated."""
        image = r.reshape(self.image_shape)
        if self.method == "fft":
            return self._fft_apply(image, jnp.conj(self.transfer_function()))
        return self._direct_apply(image, self.kernel[::-1, ::-1])

    def singular_values(self) -> Float[Array, " s"]:
        """`|k̂|`, sorted decreasingly (`A` is circulant)."""
        return jnp.sort(jnp.abs(self.transfer_function()).reshape(-1))[::-1]


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
    image_shape: tuple[int, int] = eqx.field(static=True, converter=_image_shape)
    float_dtype: str | None = eqx.field(static=True, default=None, converter=_dtype_name)

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
        image_shape = _image_shape(image_shape)
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

    image_shape: tuple[int, int] = eqx.field(static=True, converter=_image_shape)
    float_dtype: str | None = eqx.field(static=True, default=None, converter=_dtype_name)

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
