"""Shared jaxtyping aliases and the runtime-checked decorator used on public entry points."""

import math
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


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """`value` as a Python int; raises unless it is an integer (NumPy integers included, `bool`
    excluded) `>= minimum`. The error names the argument and its value."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer >= {minimum}; got {name}={value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {name}={value!r}.")
    return int(value)


def check_real(name: str, value: Any) -> float:
    """`value` as a Python float; raises unless it is a real number (NumPy scalars and 0-d
    arrays included; `bool`, complex and strings excluded). The caller checks its range."""
    if isinstance(value, bool | np.bool_) or not isinstance(
        value, int | float | np.integer | np.floating | np.ndarray | jax.Array
    ):
        raise TypeError(f"{name} must be a real number; got {name}={value!r}.")
    if isinstance(value, np.ndarray | jax.Array):
        if value.shape != () or not np.issubdtype(value.dtype, np.number):
            raise TypeError(f"{name} must be a real number; got {name}={value!r}.")
        if np.issubdtype(value.dtype, np.bool_) or np.issubdtype(value.dtype, np.complexfloating):
            raise TypeError(f"{name} must be a real number; got {name}={value!r}.")
    return float(value)


def check_positive(name: str, value: Any, *, allow_zero: bool = False) -> None:
    """Raises unless the real scalar `value` is finite and `> 0` (`>= 0` with `allow_zero`);
    a traced value is left to the caller (it cannot be inspected)."""
    if isinstance(value, jax.core.Tracer):
        return
    x = check_real(name, value)
    if not (math.isfinite(x) and (x >= 0 if allow_zero else x > 0)):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}; got {name}={value!r}.")


#: A size: a Python or NumPy integer (`bool` is refused by `check_int`).
Size: TypeAlias = int | np.integer


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
    "Size",
    "check_int",
    "check_positive",
    "check_real",
    "checked",
    "is_concrete",
]
