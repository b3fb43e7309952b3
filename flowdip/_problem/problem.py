"""Linear inverse problems `y = A x̄ + ε` with `A` held as a lineax operator."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx

from .._typing import Array, check_int, check_real, checked, Float, is_concrete, PRNGKeyArray, Size


def _real_array(name: str, x) -> Array:
    """`x` as a real array; raises `TypeError` for complex, boolean or non-numeric data (a
    complex array cast to real would silently lose its imaginary part)."""
    if isinstance(x, str | bytes):
        raise TypeError(f"{name} must be a real array; got {name}={x!r}.")
    try:
        x = jnp.asarray(x)
    except TypeError:
        raise TypeError(f"{name} must be a real array; got {type(x).__name__}.") from None
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        raise TypeError(f"{name} must be real; got a complex array (dtype {x.dtype}).")
    if x.dtype == jnp.bool_:
        raise TypeError(f"{name} must be a real array; got a boolean array.")
    return x


def _as_operator(A) -> lx.AbstractLinearOperator:
    if isinstance(A, lx.AbstractLinearOperator):
        return A
    A = _real_array("A", A)
    if A.ndim != 2:
        raise ValueError(f"A must be a matrix of shape (m, n); got an array of shape {A.shape}.")
    if A.size == 0:
        raise ValueError(f"A must have m >= 1 rows and n >= 1 columns; got shape {A.shape}.")
    if not jnp.issubdtype(A.dtype, jnp.floating):
        A = A.astype(jnp.result_type(float))
    return lx.MatrixLinearOperator(A)


def _check_finite(name: str, x) -> None:
    if x is not None and is_concrete(x) and not bool(jnp.all(jnp.isfinite(x))):
        bad = int(jnp.sum(~jnp.isfinite(x)))
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf).")


class InverseProblem(eqx.Module):
    """A linear inverse problem `y = A x̄ + ε`.

    **Fields:**

    - `operator`: the forward operator `A: ℝⁿ → ℝᵐ` as a `lineax.AbstractLinearOperator`
      (dense matrices are wrapped in `lineax.MatrixLinearOperator`).
    - `y`: the observation, shape `(m,)`.
    - `x_true`: the ground truth `x̄`, shape `(n,)`, or `None` when unknown.
    - `noise`: the noise realisation `ε = y − A x̄` when it is known, else `None`.
    - `noise_std`: the standard deviation of the Gaussian noise (0 for noise-free data).
    """

    operator: lx.AbstractLinearOperator
    y: Float[Array, " m"]
    x_true: Float[Array, " n"] | None
    noise: Float[Array, " m"] | None
    noise_std: float = eqx.field(static=True)

    def __init__(
        self,
        A: Float[Array, "m n"] | lx.AbstractLinearOperator,
        x_true: Float[Array, " n"] | None = None,
        *,
        y: Float[Array, " m"] | None = None,
        noise_std: float = 0.0,
        key: PRNGKeyArray | None = None,
    ):
        """**Arguments:**

        - `A`: the forward operator, an `(m, n)` array or a lineax operator.
        - `x_true`: the ground truth `x̄`; then `y = A x̄ + noise_std · N(0, I)` unless `y` is given.
        - `y`: an observation to use as is (then `x_true` may be omitted).
        - `noise_std`: standard deviation of the added Gaussian noise.
        - `key`: PRNG key for the noise; required when `noise_std > 0` and `y` is not given.
        """
        operator = _as_operator(A)
        m, n = operator.out_size(), operator.in_size()
        noise_std = check_real("noise_std", noise_std)
        if not math.isfinite(noise_std) or noise_std < 0:
            raise ValueError(f"noise_std must be a finite number >= 0; got {noise_std}.")
        if isinstance(operator, lx.MatrixLinearOperator):
            _check_finite("A", operator.matrix)
        if x_true is not None:
            x_true = _real_array("x_true", x_true)
            if x_true.shape != (n,):
                raise ValueError(
                    f"x_true has shape {x_true.shape} but A has shape {(m, n)}: "
                    f"x_true must have shape {(n,)}."
                )
            _check_finite("x_true", x_true)
        if y is None:
            if x_true is None:
                raise ValueError("Give x_true (to simulate y = A x̄ + ε) or the observation y.")
            clean = operator.mv(x_true)
            if noise_std > 0:
                if key is None:
                    raise ValueError("noise_std > 0 needs a PRNG key: pass key=jax.random.key(…).")
                noise = noise_std * jr.normal(key, (m,), clean.dtype)
            else:
                noise = jnp.zeros_like(clean)
            y = clean + noise
        else:
            y = _real_array("y", y)
            if y.shape != (m,):
                raise ValueError(
                    f"y has shape {y.shape} but A has shape {(m, n)}: y must have shape {(m,)}."
                )
            _check_finite("y", y)
            noise = None if x_true is None else y - operator.mv(x_true)
        self.operator = operator
        self.y = y
        self.x_true = x_true
        self.noise = noise
        self.noise_std = noise_std

    @classmethod
    @checked
    def from_observation(
        cls,
        A: Float[Array, "m n"] | lx.AbstractLinearOperator,
        y: Float[Array, " m"],
        *,
        noise_std: float = 0.0,
    ) -> "InverseProblem":
        """A problem known only through its observation `y` (no ground truth)."""
        return cls(A, None, y=y, noise_std=noise_std)

    @classmethod
    def compressed_sensing(
        cls,
        key: PRNGKeyArray,
        m: Size,
        n: Size,
        *,
        scaling: str = "unit",
        signal: str = "gaussian",
        noise_std: float = 0.0,
        dtype=None,
    ) -> "InverseProblem":
        """A Gaussian compressed-sensing instance.

        **Arguments:**

        - `key`: PRNG key (split into operator, signal and noise keys).
        - `m`, `n`: number of measurements and signal size.
        - `scaling`: `"unit"` for i.i.d. N(0, 1) entries of `A` (the P1 experiments) or
          `"1/m"` for N(0, 1/m) entries (columns of unit expected norm).
        - `signal`: `"gaussian"` for i.i.d. N(0, 1) entries of `x̄` (P1) or `"sphere"` for
          `x̄` uniform on the unit sphere.
        - `noise_std`: standard deviation of the Gaussian noise.
        - `dtype`: floating dtype (default: JAX's default float).
        """
        m, n = check_int("m", m), check_int("n", n)
        if scaling not in ("unit", "1/m"):
            raise ValueError(f"scaling must be 'unit' or '1/m'; got {scaling!r}.")
        if signal not in ("gaussian", "sphere"):
            raise ValueError(f"signal must be 'gaussian' or 'sphere'; got {signal!r}.")
        dtype = jnp.result_type(float) if dtype is None else dtype
        k_a, k_x, k_e = jr.split(key, 3)
        A = jr.normal(k_a, (m, n), dtype)
        if scaling == "1/m":
            A = A / jnp.sqrt(jnp.asarray(m, dtype))
        x = jr.normal(k_x, (n,), dtype)
        if signal == "sphere":
            x = x / jnp.linalg.norm(x)
        return cls(A, x, noise_std=noise_std, key=k_e)

    @property
    def m(self) -> int:
        """Number of measurements."""
        return self.operator.out_size()

    @property
    def n(self) -> int:
        """Signal size."""
        return self.operator.in_size()

    @property
    def matrix(self) -> Float[Array, "m n"]:
        """`A` as a dense matrix (materialised for matrix-free operators)."""
        return self.operator.as_matrix()

    def forward(self, x: Float[Array, " n"]) -> Float[Array, " m"]:
        """`A x`."""
        return self.operator.mv(x)

    def adjoint(self, r: Float[Array, " m"]) -> Float[Array, " n"]:
        """`Aᵀ r`."""
        return self.operator.transpose().mv(r)

    def singular_values(self) -> Float[Array, " s"]:
        """Singular values of `A` in decreasing order (dense SVD)."""
        return jnp.linalg.svd(self.matrix, compute_uv=False)


def operator_times_columns(
    operator: lx.AbstractLinearOperator, M: Float[Array, "n k"]
) -> Float[Array, "m k"]:
    """`A M` column by column, which also works for matrix-free operators."""
    if isinstance(operator, lx.MatrixLinearOperator):
        return operator.matrix @ M
    return jax.vmap(operator.mv, in_axes=1, out_axes=1)(M)
