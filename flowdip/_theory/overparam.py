"""Certified width thresholds over a grid of problem sizes, as curves for phase diagrams
(docs/theory.md §7.4, §10.6)."""

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from .._generator.networks import TwoLayerDIP
from .._objective import Objective
from .._problem.problem import InverseProblem
from .._sweep import Instance, run_keys
from .certificate import certify


#: The variables of [`flowdip.certified_widths`][] and the curve label of each.
WIDTH_LABELS = {
    "width_threshold_descent": "certified: R'_GD < R (k_thr/c_γ²)",
    "width_threshold": "certified: R' < R, flow (k_thr)",
    "width_chernoff": "Chernoff: σ₀ ≥ C_φ'/2 w.p. 1 − 1/n",
    "width_threshold_apriori": "a priori bound (§7.4 step 4)",
}

_VARIABLES = (
    "width_threshold",
    "width_threshold_descent",
    "width_chernoff",
    "width_threshold_apriori",
    "sigma0",
    "sigma_A",
    "psi0",
    "L_bound",
    "c_gamma",
    "R",
    "R_prime",
)


def certified_widths(
    instance: Instance,
    *,
    n: Sequence[int],
    m: Sequence[int],
    k: int,
    seeds: int = 8,
    d: int = 10,
    step_size: float | None = None,
    seed: int = 0,
    pad_to: tuple[int, int] | None = None,
) -> xr.Dataset:
    """The certificate's width thresholds for the instances a sweep would draw.

    For every `(n, m)` and run `s < seeds`, the instance of [`flowdip.sweep`][] with key
    `run_key(seed, n, m, s)` (the same `A`, `x̄`, `u` and neurons as the sweep's runs) is
    certified at width `k` (the realised thresholds depend on `σ₀` and `ψ(ℓ₀)`, which vary
    little with `k` once `k ≫ n`). Certificates are batched over seeds with `jax.vmap`; the
    instances of every cell are drawn by one compiled program, at padded sizes.

    **Arguments:**

    - `instance`: how instances are drawn ([`flowdip.Instance`][]).
    - `n`, `m`: the problem sizes; `k`: the width the certificates are computed at.
    - `seeds`: instances per `(n, m)`; `d`: input size; `seed`: the sweep's base seed.
    - `step_size`: the descent step `γ` (default: each instance's `1/L̂`).
    - `pad_to`: `(n, m)` the instances are drawn at (default: the largest `n` and `m`); calls
      with the same `pad_to`, `k`, `d` and `seeds` share the drawing program.

    **Returns:** an `xarray.Dataset` with dims `(n, m, seed)` holding `width_threshold`,
    `width_threshold_descent`, `width_chernoff`, `width_threshold_apriori`, `sigma0`,
    `sigma_A`, `psi0`, `L_bound`, `c_gamma`, `R`, `R_prime`.
    """
    n, m = [int(v) for v in n], [int(v) for v in m]
    gamma = np.nan if step_size is None else float(step_size)
    n_pad, m_pad = (max(n), max(m)) if pad_to is None else (int(pad_to[0]), int(pad_to[1]))
    if n_pad < max(n) or m_pad < max(m):
        raise ValueError(f"pad_to={pad_to!r} is below the largest sizes (n={max(n)}, m={max(m)}).")
    draw = _drawer(instance, n_pad, m_pad, int(k), int(d))
    out = {name: np.full((len(n), len(m), seeds), np.nan) for name in _VARIABLES}
    for i, nv in enumerate(n):
        for j, mv in enumerate(m):
            rows = np.asarray([(nv, mv, s) for s in range(seeds)], np.int64)
            keys = run_keys(seed, rows)
            arrays = draw(keys, jnp.asarray(nv), jnp.asarray(mv))
            certs = _certifier(instance, nv, mv)(arrays, jnp.asarray(gamma))
            for name in _VARIABLES:
                out[name][i, j] = np.asarray(getattr(certs, name))
    coords = dict(n=n, m=m, seed=np.arange(seeds))
    ds = xr.Dataset({name: (("n", "m", "seed"), v) for name, v in out.items()}, coords=coords)
    ds.attrs["k"] = int(k)
    ds.attrs["step_size"] = gamma
    return ds


# Drawing an instance costs little to run but much to compile (a dozen threefry hashes over
# every entry): both programs below run once per cell, so they are compiled without LLVM's
# expensive passes, and the draw is compiled once for every cell, at padded sizes.
_CHEAP = dict(xla_backend_optimization_level=0, xla_llvm_disable_expensive_passes=True)


@functools.cache
def _drawer(instance, n_pad, m_pad, k, d):
    def one(key, n_true, m_true):
        obj = instance.objective(key, n=n_pad, m=m_pad, k=k, d=d, n_true=n_true, m_true=m_true)
        net, problem = obj.generator, obj.problem
        return problem.matrix, problem.x_true, problem.y, net.u, net.W, net.V

    return jax.jit(jax.vmap(one, in_axes=(0, None, None)), compiler_options=_CHEAP)


def _unpad(instance, arrays, n, m) -> Objective:
    # The padded draw holds the unpadded instance in its leading rows and columns (every entry
    # has its own key; A's 1/√m and x̄'s normalisation use the true sizes).
    A, x, y, u, W, V = arrays
    problem = InverseProblem(A[:m, :n], x[:n], y=y[:m], noise_std=instance.noise_std)
    net = TwoLayerDIP(u=u, W=W, V=V[:n], activation=instance.activation)
    return Objective(problem, net, instance.loss)


@functools.cache
def _certifier(instance, n, m):
    # One compiled program per shape (n, m), batched over seeds, reused across step sizes.
    def one(arrays, gamma):
        return certify(_unpad(instance, arrays, n, m), gamma, sampled=False)

    return jax.jit(jax.vmap(one, in_axes=(0, None)), compiler_options=_CHEAP)


def certified_width_curves(
    ds: xr.Dataset,
    y: str = "n",
    *,
    which: Sequence[str] = ("width_threshold_descent", "width_chernoff"),
    quantile: float = 0.5,
) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Curves `y ↦ k` of certified widths, for `flowdip.plot.phase_diagram(..., theory=…)`.

    **Arguments:**

    - `ds`: the dataset of [`flowdip.certified_widths`][]; its dimension `y` varies, the other
      size dimension has one value.
    - `y`: `"n"` or `"m"`, the vertical axis of the phase diagram.
    - `which`: the thresholds to draw (keys of `flowdip._overparam.WIDTH_LABELS`).
    - `quantile`: the quantile over seeds (default: the median).

    **Returns:** `{label: f}`, `f(y_values)` interpolating the quantile linearly in log-log
    coordinates (and extrapolating along the end segments).
    """
    other = "m" if y == "n" else "n"
    if ds.sizes[other] != 1:
        raise ValueError(f"Select one value of {other!r} first (it has {ds.sizes[other]}).")
    ys = np.asarray(ds[y].values, float)
    curves = {}
    for name in which:
        values = ds[name].isel({other: 0}).quantile(quantile, dim="seed").values
        curves[WIDTH_LABELS.get(name, name)] = _loglog_interpolant(ys, np.asarray(values, float))
    return curves


def _loglog_interpolant(xs: np.ndarray, ys: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    ok = np.isfinite(ys) & (ys > 0)
    lx, ly = np.log(xs[ok]), np.log(ys[ok])

    def f(values):
        v = np.log(np.asarray(values, float))
        if lx.size == 0:
            return np.full(v.shape, np.nan)
        if lx.size == 1:
            return np.full(v.shape, np.exp(ly[0]))
        out = np.interp(v, lx, ly)
        lo = (ly[1] - ly[0]) / (lx[1] - lx[0])
        hi = (ly[-1] - ly[-2]) / (lx[-1] - lx[-2])
        out = np.where(v < lx[0], ly[0] + lo * (v - lx[0]), out)
        out = np.where(v > lx[-1], ly[-1] + hi * (v - lx[-1]), out)
        return np.exp(out)

    return f
