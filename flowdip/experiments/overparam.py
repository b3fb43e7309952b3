"""`flowdip reproduce gd-overparam`: the P3-style check of the overparametrisation bound for
gradient descent (docs/theory.md §7.4, §8.2, §10.6).

Two sweeps with gradient descent at a certified step size: width `k` against the signal size
`n` at fixed `m`, and `k` against the number of measurements `m` at fixed `n`. On each phase
diagram the certified thresholds are drawn (the realised `R'_GD < R` width `k_thr/c_γ²` and
the Chernoff width, medians over the same instances the sweep runs) next to the empirical
widths at which descent converges with probability 0.5 and 0.9. docs/theory.md §11.4 predicts the
certified widths to be far above the empirical ones: the bound is pessimistic.

The protocol is the proposal of docs/theory.md §11.2 (P3's own grids are unknown): `A` with
N(0, 1/m) entries, `x̄` uniform on the unit sphere, sigmoid, Rademacher `V`, MSE, success at
loss < 1e-7. The step size is `1/max L̂` over the certified instances (so `c_γ ≥ ½` for each).
"""

import dataclasses
import json
import math
import os
import pathlib
import time
from collections.abc import Callable, Sequence

import jax
import matplotlib.pyplot as plt
import numpy as np

from .. import plot
from .._dynamics import GradientDescent, LossBelow
from .._sweep import Grid, Instance, load_dataset, save_dataset, sweep
from .._theory.overparam import certified_width_curves, certified_widths
from ._folder import read_options


@dataclasses.dataclass(frozen=True)
class Options:
    """Every choice of `flowdip reproduce gd-overparam`.

    **Arguments:**

    - `n`: the signal sizes of the first diagram.
    - `m_fixed`: the number of measurements of the first diagram.
    - `m`: the measurement counts of the second diagram.
    - `n_fixed`: the signal size of the second diagram.
    - `k`: the widths of both diagrams.
    - `seeds`: runs per cell.
    - `cert_seeds`: instances certified per row.
    - `k_eval`: the width the certificates are computed at (default: the largest `k`).
    - `step_size`: the descent step (default: `1/max L̂` over the certified instances).
    - `tol`: success at loss < `tol`.
    - `max_steps`: success within `max_steps` steps.
    - `shared_padding`: run both sweeps at the same padded sizes (the largest `n`, `m` and
      `k` of both), so that one compiled program runs both when their rows are as many: fewer
      compilations, more padding (the quick preset's choice; the full grid pads per sweep).
    - `d`: input size.
    - `seed`: base seed.
    - `out`: output folder.
    - `progress`: progress bars.
    """

    n: int | Sequence[int] = dataclasses.field(
        default=(10, 20, 40, 80), metadata=dict(positive=True)
    )
    m_fixed: int = 5
    m: int | Sequence[int] = dataclasses.field(
        default=(2, 5, 10, 20, 30), metadata=dict(positive=True)
    )
    n_fixed: int = 40
    k: int | Sequence[int] = dataclasses.field(
        default=tuple(int(v) for v in np.round(np.geomspace(8, 16384, 12))),
        metadata=dict(positive=True),
    )
    seeds: int = dataclasses.field(default=20, metadata=dict(positive=True))
    cert_seeds: int = 8
    k_eval: int | None = None
    step_size: float | None = dataclasses.field(default=None, metadata=dict(positive=True))
    tol: float = dataclasses.field(default=1e-7, metadata=dict(positive=True))
    max_steps: int = dataclasses.field(default=25_000, metadata=dict(positive=True))
    shared_padding: bool = False
    d: int = 10
    seed: int = 0
    out: str | os.PathLike = pathlib.Path("results/gd-overparam")
    progress: bool = True

    def __post_init__(self):
        object.__setattr__(self, "out", pathlib.Path(self.out))
        for name in ("n", "m", "k"):
            values = tuple(int(v) for v in np.atleast_1d(getattr(self, name)))
            if not values or min(values) < 1:
                raise ValueError(f"{name} must be positive integers; got {name}={values!r}.")
            object.__setattr__(self, name, values)
        for name in ("m_fixed", "n_fixed", "seeds", "cert_seeds", "max_steps", "d"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {name}={value!r}.")
        if self.k_eval is not None and not self.k_eval >= 1:
            raise ValueError(f"k_eval must be an integer >= 1; got k_eval={self.k_eval!r}.")
        if self.m_fixed >= min(self.n):
            raise ValueError(
                f"m_fixed={self.m_fixed} must be below every n (got n={self.n}): the theory "
                "needs m < n for σ_A of a Gaussian A to be bounded away from 0."
            )
        if max(self.m) >= self.n_fixed:
            raise ValueError(f"every m must be below n_fixed={self.n_fixed}; got m={self.m}.")
        for name in ("step_size", "tol"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number; got {name}={value!r}.")

    @classmethod
    def quick(cls, **overrides) -> "Options":
        """A small grid (3 rows per diagram, 7 widths, 4 seeds, 2000 steps) that runs in
        about a minute."""
        base = dict(
            n=(8, 16, 32),
            m_fixed=4,
            m=(2, 4, 8),
            n_fixed=16,
            k=(8, 16, 32, 64, 128, 256, 512),
            seeds=4,
            cert_seeds=4,
            max_steps=2000,
            shared_padding=True,
            out=pathlib.Path("results/gd-overparam-quick"),
        )
        return cls(**{**base, **overrides})


INSTANCE = Instance(scaling="1/m", signal="sphere")


def _widths_at(freq: np.ndarray, ks: np.ndarray, level: float) -> np.ndarray:
    """Per row, the smallest `k` with success frequency ≥ `level` (NaN if none)."""
    out = np.full(freq.shape[0], np.nan)
    for i, row in enumerate(freq):
        hit = np.nan_to_num(row, nan=0.0) >= level
        if hit.any():
            out[i] = ks[np.argmax(hit)]
    return out


def _rows(options: Options) -> list[tuple[str, tuple[int, ...], tuple[int, ...]]]:
    return [("n", tuple(options.n), (options.m_fixed,)), ("m", (options.n_fixed,), options.m)]


def run(options: Options, log: Callable[[str], None] = print) -> dict[str, pathlib.Path]:
    """Runs both sweeps, certifies the same instances and draws the figure.

    **Returns:** the paths written: `figure` (`gd-overparam.png`), `summary`
    (`summary.txt`), `sweep_n`, `sweep_m`, `certificates_n`, `certificates_m` (netCDF).
    """
    if not jax.config.read("jax_enable_x64"):
        raise RuntimeError("gd-overparam needs float64: jax_enable_x64 (a 1e-7 loss threshold).")
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    k_eval = options.k_eval or max(options.k)
    start = time.perf_counter()
    rows = _rows(options)
    # One compiled program draws every certified instance (at the largest sizes of both
    # diagrams); with `shared_padding` both sweeps are padded alike too, and share a program.
    n_pad = max(*options.n, options.n_fixed)
    m_pad = max(*options.m, options.m_fixed)
    log(f"Certifying {options.cert_seeds} instances per row at k = {k_eval} ...")

    def certify_row(ns, ms, step_size):
        return certified_widths(
            INSTANCE,
            n=ns,
            m=ms,
            k=k_eval,
            seeds=options.cert_seeds,
            d=options.d,
            seed=options.seed,
            step_size=step_size,
            pad_to=(n_pad, m_pad),
        )

    certs = {}
    for i, (y, ns, ms) in enumerate(rows):
        certs[y] = certify_row(ns, ms, options.step_size)
        log(f"  [{i + 1}/2] rows {y} = {[int(v) for v in certs[y][y].values]}: done")
    gamma = options.step_size
    if gamma is None:
        L = max(float(np.nanmax(c["L_bound"].values)) for c in certs.values())
        gamma = 1.0 / L
        # Same compiled certificates, now at the common step (c_γ = 1 − γL̂/2 ≥ ½ for each).
        for y, ns, ms in rows:
            certs[y] = certify_row(ns, ms, gamma)
    log(f"Descent step γ = {gamma:.4g} (1/max L̂ over the certified instances).")
    datasets = {}
    for i, (y, ns, ms) in enumerate(rows):
        grid = Grid(n=ns, m=ms, k=options.k, seeds=options.seeds, d=options.d)
        log(f"Sweep {i + 1}/2 over k and {y}: {grid.num_runs} runs ...")
        datasets[y] = sweep(
            grid,
            dynamics=GradientDescent(gamma),
            num_steps=options.max_steps,
            stop=LossBelow(options.tol),
            instance=INSTANCE,
            out=out / f"sweep_{y}",
            seed=options.seed,
            progress=options.progress,
            bucket_ratio=1e6,
            pad_to=(n_pad, m_pad, max(options.k)) if options.shared_padding else None,
        )
    wall = time.perf_counter() - start
    paths = {
        "certificates_n": out / "certificates_n.nc",
        "certificates_m": out / "certificates_m.nc",
        "sweep_n": out / "sweep_n" / "results.nc",
        "sweep_m": out / "sweep_m" / "results.nc",
    }
    for y in ("n", "m"):
        save_dataset(certs[y], paths[f"certificates_{y}"])
    return _draw(options, datasets, certs, gamma, wall) | paths


def redraw(folder: str | pathlib.Path) -> dict[str, pathlib.Path]:
    """Redraws the figure and the summary from the sweeps and certificates saved in `folder`.

    **Returns:** the paths written: `figure` and `summary`.
    """
    folder = pathlib.Path(folder)
    options = read_options(folder, Options, out=folder)
    datasets = {y: load_dataset(folder / f"sweep_{y}" / "results.nc") for y in ("n", "m")}
    certs = {y: load_dataset(folder / f"certificates_{y}.nc") for y in ("n", "m")}
    gamma = json.loads(datasets["n"].attrs["config"])["step_size"]
    return _draw(options, datasets, certs, gamma, None)


def _draw(options: Options, datasets, certs, gamma: float, wall) -> dict[str, pathlib.Path]:
    out, rows, k_eval = options.out, _rows(options), options.k_eval or max(options.k)
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.6), layout="constrained")
    lines = [
        f"gd-overparam: GD γ = {gamma:.4g}, success at loss < {options.tol:g} within "
        f"{options.max_steps} steps; A ~ N(0, 1/m), x̄ on the sphere; certificates at "
        f"k = {k_eval}, medians over {options.cert_seeds} instances",
    ]
    for ax, (y, _, _) in zip(axes, rows):
        ds = datasets[y]
        curves = certified_width_curves(certs[y], y)
        plot.phase_diagram(ds, x="k", y=y, ax=ax, theory=curves)
        freq = ds["converged"].mean("seed").squeeze().transpose(y, "k").values
        freq = freq.reshape(len(ds[y]), len(ds["k"]))
        ks = np.asarray(ds["k"].values, float)
        ys = np.asarray(ds[y].values, float)
        k50, k90 = _widths_at(freq, ks, 0.5), _widths_at(freq, ks, 0.9)
        (marker,) = ax.plot(k90, ys, "w^", ms=9, mec="black", label="empirical: success ≥ 90%")
        old = ax.get_legend()
        handles = (list(old.legend_handles) if old is not None else []) + [marker]
        legend = ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
        legend.get_frame().set_facecolor("0.75")  # the 50% line is white
        fixed = f"m = {options.m_fixed}" if y == "n" else f"n = {options.n_fixed}"
        ax.set_title(f"GD, {fixed}: empirical success against certified widths")
        thr = np.median(
            certs[y]["width_threshold_descent"].squeeze().values.reshape(len(ys), -1), 1
        )
        chern = np.median(certs[y]["width_chernoff"].squeeze().values.reshape(len(ys), -1), 1)
        # Show the certified widths even beyond the grid: the gap is the point of the figure.
        top = np.nanmax(np.concatenate([thr, chern, [ks.max()]]))
        ax.set_xlim(ax.get_xlim()[0], max(ax.get_xlim()[1], 2 * top))
        lines.append("")
        lines.append(f"{y:>4} | empirical k (50%) | k (90%) | certified k_thr/c_γ² | Chernoff k")
        for j, yv in enumerate(ys):
            lines.append(
                f"{int(yv):>4} | {k50[j]:>17g} | {k90[j]:>7g} | {thr[j]:>20.4g} | {chern[j]:>10.4g}"
            )
    fig.suptitle(
        f"Overparametrisation for gradient descent (γ = {gamma:.3g}): the certified widths "
        "are far above the widths at which descent converges"
    )
    paths = {"figure": out / "gd-overparam.png", "summary": out / "summary.txt"}
    fig.savefig(paths["figure"], dpi=100)
    plt.close(fig)
    if wall is not None:
        lines.append("")
        lines.append(f"wall time: {wall:.1f} s")
    paths["summary"].write_text("\n".join(lines) + "\n")
    return paths
