"""Shared jaxtyping aliases and the runtime-checked decorator used on public entry points."""

from typing import Any, TYPE_CHECKING, TypeAlias

import jax
import numpy as np
from beartype import beartype
from jaxtyping import Array, ArrayLike, Bool, Float, Int, jaxtyped, Real


if TYPE_CHECKING:
    RealScalarLike: TypeAlias = float | int | Array | np.ndarray | np.generic
    BoolScalarLike: TypeAlias = bool | Array | np.ndarray | np.bool_
    IntScalarLike: TypeAlias = int | Array | np.ndarray | np.integer
else:
    RealScalarLike = Real[ArrayLike, ""]
    BoolScalarLike = Bool[ArrayLike, ""]
    IntScalarLike = Int[ArrayLike, ""]

PRNGKeyArray: TypeAlias = Any  # typed keys and legacy uint32 keys are both accepted
from jaxtyping import PyTree  # noqa: E402


FloatScalar: TypeAlias = Float[Array, ""]
IntScalar: TypeAlias = Int[Array, ""]

#: Decorator that checks jaxtyping annotations with beartype at call time. Public entry points
#: carry it so that users get shape errors too; inside `jit` it costs nothing (trace time only).
checked = jaxtyped(typechecker=beartype)


def is_concrete(*xs: Any) -> bool:
    """True when every argument is a concrete value (not a tracer), so it can be inspected."""
    return not any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(xs))


__all__ = [
    "Array",
    "ArrayLike",
    "Bool",
    "BoolScalarLike",
    "Float",
    "FloatScalar",
    "Int",
    "IntScalar",
    "IntScalarLike",
    "PRNGKeyArray",
    "PyTree",
    "Real",
    "RealScalarLike",
    "checked",
    "is_concrete",
]
