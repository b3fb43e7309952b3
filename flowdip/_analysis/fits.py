"""Least-squares fits of results: exponential loss rates, log-log slopes, and the power laws
of phase transitions in a sweep's success frequencies."""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import xarray as xr

from .._typing import Array, Bool, checked, Float, Real


def fit_rate(
    ts: Float[Array, " T"],
    loss: Float[Array, " T"],
    valid: Bool[Array, " T"] | None = None,
    *,
    floor: float | None = None,
) -> Float[Array, ""]:
    """Fitted exponential rate `r` of `loss ≈ c·e^{−r t}`: minus the least-squares slope of
    `log loss` against `t`.

    Points that are invalid, non-finite, or below `floor` (default: `1e3·eps·max(loss)`, where
    round-off takes over) are left out; NaN when fewer than two points remain.
    """
    eps = float(jnp.finfo(loss.dtype).eps)
    ok = jnp.isfinite(loss) & (loss > 0)
    if valid is not None:
        ok = ok & valid
    top = jnp.max(jnp.where(ok, loss, 0))
    ok = ok & (loss > (1e3 * eps * top if floor is None else floor))
    w = ok.astype(loss.dtype)
    count = jnp.sum(w)
    logl = jnp.log(jnp.where(ok, loss, 1))
    tbar = jnp.sum(w * ts) / jnp.maximum(count, 1)
    lbar = jnp.sum(w * logl) / jnp.maximum(count, 1)
    sxx = jnp.sum(w * (ts - tbar) ** 2)
    sxy = jnp.sum(w * (ts - tbar) * (logl - lbar))
    slope = sxy / jnp.where(sxx > 0, sxx, 1)
    return jnp.where((count >= 2) & (sxx > 0), -slope, jnp.nan)


def loglog_slope(
    x: Float[Array, " S"], y: Float[Array, " S"]
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """Least-squares `(slope, intercept)` of `log y` against `log x`."""
    lx, ly = jnp.log(x), jnp.log(y)
    A = jnp.stack([lx, jnp.ones_like(lx)], axis=1)
    coef, *_ = jnp.linalg.lstsq(A, ly)
    return coef[0], coef[1]


# -- phase transitions of sweeps ----------------------------------------------------------------
#: The laws `fit_transition` fits: name -> (the row dimension `y`, its exponent).
FITTED_LAWS: dict[str, tuple[str, float]] = {"k ∝ n²": ("n", 2.0), "k ∝ m": ("m", 1.0)}


class PowerLawFit(eqx.Module):
    """A fitted power law `width = c · y^exponent` of the 50% crossings of a success table.

    **Fields:**

    - `coefficient`: `c`, fitted by least squares in log space with the exponent fixed (NaN
      with no usable row).
    - `exponent`: that fixed exponent (2 for `k ∝ n²`, 1 for `k ∝ m`).
    - `free_exponent`: the least-squares slope of `log width` against `log y` (NaN with fewer
      than two rows that differ in `y`).
    - `rows_used`: the rows with a crossing inside the grid.
    """

    coefficient: float
    exponent: float
    free_exponent: float
    rows_used: int


class SuccessFrequency(eqx.Module):
    """The success frequency of a sweep over two of its dimensions (the mean over `seed` of
    `converged`), as `success_frequency` gives it.

    **Fields:** `frequency` (rows: `y`, columns: `x`; NaN for cells not run), `x`, `y` (the
    dimension names), `x_values`, `y_values`, `fixed` (the value of every other dimension),
    `runs` (the size of `seed`).
    """

    frequency: Float[np.ndarray, "rows cols"]
    x_values: Float[np.ndarray, " cols"]
    y_values: Float[np.ndarray, " rows"]
    fixed: dict[str, float | int]
    runs: int
    x: str = eqx.field(static=True)
    y: str = eqx.field(static=True)


def success_frequency(ds: xr.Dataset, x: str = "k", y: str | None = None) -> SuccessFrequency:
    """The success frequency of a sweep over `x` (columns) and `y` (rows); dimensions of size
    one are squeezed. `y` defaults to whichever of `n` and `m` varies.

    **Raises:** `ValueError` if more than two dimensions (besides `seed`) vary, or if `x` or
    `y` is not one of them.
    """
    if "converged" not in ds:
        raise ValueError("phase_diagram needs a dataset with a `converged` variable.")
    conv = ds["converged"]
    if "seed" not in conv.dims:
        raise ValueError(f"`converged` has no `seed` dimension (its dims: {conv.dims}).")
    runs = int(conv.sizes["seed"])
    freq_da = conv.astype(float).mean("seed", skipna=True)
    varying = [dim for dim in freq_da.dims if freq_da.sizes[dim] > 1]
    if len(varying) > 2:
        raise ValueError(
            f"phase_diagram draws two varying dimensions; this dataset varies in {len(varying)} "
            f"({', '.join(f'{d}: {freq_da.sizes[d]} values' for d in varying)}). Select one "
            "value of the others first, e.g. `ds.sel(m=10)` or `ds.isel(n=[0])`."
        )
    if x not in freq_da.dims:
        raise ValueError(f"x={x!r} is not a dimension of the dataset ({list(freq_da.dims)}).")
    if y is None:
        candidates = [d for d in ("n", "m") if d != x and d in varying]
        candidates = candidates or [d for d in varying if d != x]
        if len(candidates) != 1:
            raise ValueError(
                f"Cannot choose y: the varying dimensions besides x={x!r} are {candidates}; "
                "pass y=…."
            )
        y = candidates[0]
    if y not in freq_da.dims or y == x:
        raise ValueError(f"y={y!r} must be a dimension of the dataset other than x={x!r}.")
    fixed = {d: freq_da[d].values.item() for d in freq_da.dims if d not in (x, y)}
    freq_da = freq_da.squeeze([d for d in fixed]).transpose(y, x)
    return SuccessFrequency(
        frequency=np.asarray(freq_da.values, dtype=float),
        x_values=np.asarray(freq_da[x].values, dtype=float),
        y_values=np.asarray(freq_da[y].values, dtype=float),
        fixed=fixed,
        runs=runs,
        x=x,
        y=y,
    )


@checked
def transition_widths(
    freq: Real[np.ndarray, "rows cols"], x_values: Real[np.ndarray, " cols"]
) -> Float[np.ndarray, " rows"]:
    """The 50% crossing along each row of a success-frequency table: for row `i`, the
    smallest `x_values[j]` with `freq[i, j] ≥ 0.5`, an upper bound of the crossing within one
    grid step.

    **Arguments:**

    - `freq`: success frequencies, shape `(rows, len(x_values))` (NaN for cells not run).
    - `x_values`: the grid values along the columns, increasing.

    **Returns:** one value per row; NaN where the row has no crossing inside the grid (it never
    reaches 0.5, or it is already at or above 0.5 in its first column, so the crossing lies
    below the grid).
    """
    freq = np.asarray(freq, dtype=float)
    x_values = np.asarray(x_values, dtype=float)
    out = np.full(freq.shape[0], np.nan)
    for i, row in enumerate(freq):
        above = np.nan_to_num(row, nan=0.0) >= 0.5
        if above.any() and not above[0]:
            out[i] = x_values[np.argmax(above)]
    return out


@checked
def fit_power_law(
    y_values: Real[np.ndarray, " rows"], widths: Real[np.ndarray, " rows"], exponent: int | float
) -> PowerLawFit:
    """Fits `width = c · y^exponent` by least squares in log space (the exponent fixed), and
    the free exponent of `log width` against `log y`.

    **Arguments:**

    - `y_values`: the row values (e.g. `n`), positive.
    - `widths`: the crossing width of each row (NaN rows are left out), see
      [`flowdip.transition_widths`][].
    - `exponent`: the fixed exponent of the law (2 for `k ∝ n²`, 1 for `k ∝ m`).

    **Returns:** a [`flowdip.PowerLawFit`][].
    """
    y = np.asarray(y_values, dtype=float)
    w = np.asarray(widths, dtype=float)
    ok = np.isfinite(w) & (w > 0) & (y > 0)
    if not ok.any():
        return PowerLawFit(float("nan"), float(exponent), float("nan"), 0)
    ly, lw = np.log(y[ok]), np.log(w[ok])
    c = float(np.exp(np.mean(lw - exponent * ly)))
    free = float(np.polyfit(ly, lw, 1)[0]) if len(np.unique(ly)) >= 2 else float("nan")
    return PowerLawFit(c, float(exponent), free, int(ok.sum()))


@checked
def fit_transition(ds: xr.Dataset, law: str, *, x: str = "k", y: str | None = None) -> PowerLawFit:
    """Fits one of the laws `"k ∝ n²"` and `"k ∝ m"` to a sweep's phase transition: the
    crossing width of each row of the success frequency (the smallest `x` with frequency
    `≥ 0.5`, see [`flowdip.transition_widths`][]) against the row value, by
    [`flowdip.fit_power_law`][]. These are the fits [`flowdip.plot.phase_diagram`][] draws.

    **Arguments:**

    - `ds`: a sweep dataset ([`flowdip.sweep`][]) with a `converged` variable and a `seed`
      dimension, varying in at most two dimensions besides `seed`.
    - `law`: `"k ∝ n²"` or `"k ∝ m"`.
    - `x`: the dimension of the widths (default `k`).
    - `y`: the dimension of the rows (default: the law's, `n` or `m`).

    **Returns:** a [`flowdip.PowerLawFit`][].

    **Raises:** `ValueError` for an unknown law, a `y` other than the law's, or a dataset that
    [`flowdip.plot.phase_diagram`][] would refuse.
    """
    if law not in FITTED_LAWS:
        raise ValueError(f"Unknown theory law {law!r}; give one of {list(FITTED_LAWS)}.")
    dim, power = FITTED_LAWS[law]
    y = dim if y is None else y
    if dim != y:
        raise ValueError(f"The law {law!r} needs y={dim!r}; this diagram has y={y!r}.")
    table = success_frequency(ds, x, y)
    return fit_power_law(table.y_values, transition_widths(table.frequency, table.x_values), power)
