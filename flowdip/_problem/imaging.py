"""The interface of imaging operators: a linear operator on images of shape `(h, w)` with an
explicit adjoint, exposed to lineax on the flattened image, with its norm and conditioning
from its singular values."""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
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

from .._typing import Array, Float


def image_shape_of(shape) -> tuple[int, int]:
    """`(h, w)` as two Python ints, checked (the converter of every `image_shape` field)."""
    shape = tuple(shape)
    if len(shape) != 2 or any(
        isinstance(s, bool) or not isinstance(s, int | np.integer) or s < 1 for s in shape
    ):
        raise ValueError(f"image_shape must be two positive integers (h, w); got {shape!r}.")
    return int(shape[0]), int(shape[1])


def dtype_name(dtype) -> str:
    """The name of a floating dtype (`None`: JAX's default float), hashable for static fields."""
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
        """`σ_A`, the smallest singular value among the `min(m, n)` (docs/theory.md §2.1; it is
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
