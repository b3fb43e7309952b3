"""Reproductions of the two experiments of P1 (Buskulic, Fadili, Quéau, SSVM 2023, §4):
`flowdip reproduce ssvm-fig1` and `flowdip reproduce ssvm-fig2`.

The protocol of P1 (its §4, see `THEORY.md` §0b): noise-free Gaussian compressed sensing, the
two-layer DIP initialised as in its assumptions A-1…A-4 (`u` uniform on the sphere, `W₀` with
N(0, 1) entries, Rademacher `V`), the sigmoid activation, `A` and `x̄` with i.i.d. N(0, 1)
entries, gradient descent with a fixed step of 1, stopped once the loss falls below 1e-7 or
after 25 000 steps, 50 runs per cell; the figures show the frequency of reaching the threshold.

P1 leaves blank the grids, `m` in Figure 1, `n` in Figure 2 and `d`. Ours: `d = 10` (it does
not affect the dynamics, THEORY.md §1.4); Figure 1 at `m = 10` with `n` from 4 to 512 and `k`
from 16 to 8192; Figure 2 at `n = 40` with `m` from 2 to 40 and `k` from 4 to 8192, all
log-spaced. Small exploratory runs (4 seeds) placed the 50% line inside both grids.
"""

import dataclasses
import glob
import json
import os
import pathlib
import re
import time
from collections.abc import Callable, Sequence

import jax
import matplotlib.pyplot as plt
import numpy as np

from .. import plot
from .._dynamics import GradientDescent, LossBelow
from .._sweep import Grid, Instance, merge_sweeps, sweep


#: Figure 1: `m` fixed, `n` and `k` vary.
FIG1_N = (4, 6, 10, 15, 23, 36, 56, 88, 136, 212, 329, 512)
FIG1_M = (10,)
FIG1_K = (16, 28, 50, 88, 155, 273, 481, 848, 1495, 2635, 4646, 8192)
#: Figure 2: `n` fixed, `m` and `k` vary.
FIG2_N = (40,)
FIG2_M = (2, 3, 4, 5, 6, 8, 10, 13, 17, 23, 30, 40)
FIG2_K = (4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)


@dataclasses.dataclass(frozen=True)
class SSVMOptions:
    """Every choice of one P1 reproduction; the defaults are the P1 protocol (Figure 1 grid).

    **Arguments:**

    - `n`, `m`, `k`: the grid values (signal sizes, measurement counts, widths), an int or
      a sequence each (stored as tuples).
    - `seeds`: runs per cell (P1: 50).
    - `d`: input size (blank in P1; it does not affect the dynamics).
    - `scaling`: entries of `A`, N(0, 1) for `"unit"` (P1) or N(0, 1/m) for `"1/m"`.
    - `step_size`: the gradient-descent step (P1: 1).
    - `tol`: a run succeeds once the loss `½‖A g(u, θ) − y‖²` falls below `tol` (P1: 1e-7).
    - `max_steps`: the step cap (P1: 25 000).
    - `out`: the output folder.
    - `shard`: `(i, N)`, run only the `i`-th of `N` slices of the sweep (0 ≤ i < N).
    - `resume`: continue a sweep already started in `out` (without it, a folder that already
      holds finished chunks of this shard is refused rather than silently reused).
    - `seed`: base seed of the run keys.
    - `chunk_size`, `bucket_ratio`: passed to [`flowdip.sweep`][]; engineering only, they do
      not change the results. By default a chunk is one cell (`seeds` runs), the unit the
      folder saves and a resumed run skips; within it, runs that stop leave the batch (see
      [`flowdip.sweep`][]), since the runs of a cell stop anywhere between 30 steps and the cap.
    - `progress`: show the sweep's progress bar.
    """

    # Annotated with what the constructor accepts; stored as tuples, a `Path` and floats.
    n: int | Sequence[int] = FIG1_N
    m: int | Sequence[int] = FIG1_M
    k: int | Sequence[int] = FIG1_K
    seeds: int = 50
    d: int = 10
    scaling: str = "unit"
    step_size: float | int = 1.0
    tol: float | int = 1e-7
    max_steps: int = 25_000
    out: str | os.PathLike = pathlib.Path("results/ssvm-fig1")
    shard: tuple[int, int] = (0, 1)
    resume: bool = False
    seed: int = 0
    chunk_size: int | None = None
    bucket_ratio: float | int | None = None
    progress: bool = True

    def __post_init__(self):
        object.__setattr__(self, "out", pathlib.Path(self.out))
        for name in ("n", "m", "k"):
            value = getattr(self, name)
            value = (value,) if isinstance(value, int | np.integer) else tuple(value)
            if any(isinstance(v, bool) or int(v) != v for v in value):
                raise ValueError(f"{name} must be integers; got {value!r}.")
            object.__setattr__(self, name, tuple(int(v) for v in value))
        for name in ("step_size", "tol"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.bucket_ratio is not None:
            object.__setattr__(self, "bucket_ratio", float(self.bucket_ratio))
        if self.scaling not in ("unit", "1/m"):
            raise ValueError(f"scaling must be 'unit' or '1/m'; got {self.scaling!r}.")
        if not (self.step_size > 0 and np.isfinite(self.step_size)):
            raise ValueError(f"step_size must be a positive number; got {self.step_size!r}.")
        if not (self.tol > 0 and np.isfinite(self.tol)):
            raise ValueError(f"tol must be a positive number; got {self.tol!r}.")
        for name in ("max_steps", "seeds", "d"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {value!r}.")
        i, count = self.shard
        if not (isinstance(i, int) and isinstance(count, int) and 0 <= i < count):
            raise ValueError(f"shard must be (i, N) with integers 0 <= i < N; got {self.shard!r}.")

    @property
    def grid(self) -> Grid:
        """The sweep grid."""
        return Grid(n=self.n, m=self.m, k=self.k, seeds=self.seeds, d=self.d)

    @classmethod
    def fig1(cls, quick: bool = False, **overrides) -> "SSVMOptions":
        """Figure 1: `m = 10`, `n` and `k` vary. `quick`: a 5 × 5 grid, 4 seeds, 2000 steps."""
        if quick:
            base = dict(
                n=(5, 14, 38, 103, 282),
                k=(16, 40, 100, 250, 630),
                seeds=4,
                max_steps=2000,
                out=pathlib.Path("results/ssvm-fig1-quick"),
                bucket_ratio=1e6,  # one compiled program: compiling dominates a small grid
                chunk_size=512,
            )
        else:
            base = {}
        return cls(**{**dict(n=FIG1_N, m=FIG1_M, k=FIG1_K), **base, **overrides})

    @classmethod
    def fig2(cls, quick: bool = False, **overrides) -> "SSVMOptions":
        """Figure 2: `n = 40`, `m` and `k` vary. `quick`: a 5 × 5 grid, 4 seeds, 2000 steps."""
        if quick:
            base = dict(
                m=(2, 5, 10, 20, 40),
                k=(4, 16, 64, 256, 1024),
                seeds=4,
                max_steps=2000,
                out=pathlib.Path("results/ssvm-fig2-quick"),
                bucket_ratio=1e6,
                chunk_size=512,
            )
        else:
            base = dict(out=pathlib.Path("results/ssvm-fig2"))
        return cls(**{**dict(n=FIG2_N, m=FIG2_M, k=FIG2_K), **base, **overrides})


_CHUNK = re.compile(r"chunk_(\d+)\.npz$")


def _check_fresh(options: SSVMOptions) -> None:
    if options.resume:
        return
    i, count = options.shard
    mine = [
        p
        for p in glob.glob(str(options.out / "chunk_*.npz"))
        if (match := _CHUNK.search(p)) and int(match.group(1)) % count == i
    ]
    if mine:
        raise ValueError(
            f"{options.out} already holds {len(mine)} finished chunk(s) of a sweep. Pass "
            "--resume (resume=True) to continue it, or choose another output folder."
        )


def _figure(ds, name: str, y: str, law: str, out: pathlib.Path):
    from .._analysis.fits import fit_transition

    fig = plt.figure(figsize=(7.2, 5.4), layout="constrained")
    ax = plot.phase_diagram(ds, x="k", y=y, ax=fig.gca(), theory=law)
    config = json.loads(ds.attrs.get("config", "{}"))
    step = config.get("step_size", float("nan"))
    scaling = str(config.get("instance", {}).get("scaling", "?")).strip("'\"")
    law_a = {"unit": "N(0, 1)", "1/m": "N(0, 1/m)"}.get(scaling, scaling)
    ax.set_title(f"P1 {name}: GD η = {step:g}, A ~ {law_a}\n{ax.get_title()}", fontsize="medium")
    path = out / f"ssvm-{name.lower().replace(' ', '')}.png"
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path, fit_transition(ds, law, x="k", y=y)


def _summary(ds, y: str, law: str, fit, wall: float | None) -> str:
    from .._analysis.fits import transition_widths

    freq = ds["converged"].mean("seed")
    freq = freq.squeeze([d for d in freq.dims if d not in (y, "k")]).transpose(y, "k")
    ys, ks = freq[y].values, freq["k"].values
    widths = transition_widths(freq.values, ks)
    lines = [
        f"success frequency (rows: {y}, columns: k); runs per cell: {ds.sizes['seed']}",
        f"{y:>6} |" + "".join(f"{int(k):>7}" for k in ks) + "  | smallest k with freq >= 0.5",
    ]
    for j, yv in enumerate(ys):
        row = "".join("      -" if np.isnan(v) else f"{v:7.2f}" for v in freq.values[j])
        width = "-" if np.isnan(widths[j]) else f"{widths[j]:g}"
        lines.append(f"{int(yv):>6} |{row}  | {width}")
    c, free, used = fit.coefficient, fit.free_exponent, fit.rows_used
    lines.append("")
    lines.append(
        f"fit {law}: c = {c:.4g} over {used} rows with a crossing inside the grid; "
        f"free log-log exponent: {free:.3f}"
    )
    lines.append(f"complete: {bool(ds.attrs.get('complete', 0))}")
    if wall is not None:
        lines.append(f"wall time of this call: {wall:.1f} s")
    return "\n".join(lines) + "\n"


def _reproduce(
    options: SSVMOptions, name: str, y: str, law: str, merge: list | None, log: Callable
) -> dict[str, pathlib.Path]:
    if not jax.config.read("jax_enable_x64"):
        raise RuntimeError(
            "The P1 protocol needs float64 (a loss threshold of 1e-7): call "
            "`jax.config.update('jax_enable_x64', True)` first."
        )
    out = options.out
    start = time.perf_counter()
    if merge:
        ds = merge_sweeps(merge, out=out)
        log(f"Merged {len(merge)} folder(s) into {out}.")
    else:
        _check_fresh(options)
        grid = options.grid
        log(
            f"P1 {name}: {len(grid.n)} n × {len(grid.m)} m × {len(grid.k)} k cells, "
            f"{grid.seeds} runs each ({grid.num_runs} runs"
            + (f", shard {options.shard[0]}/{options.shard[1]}" if options.shard[1] > 1 else "")
            + f"); GD η = {options.step_size:g}, stop at loss < {options.tol:g} or "
            f"{options.max_steps} steps; A ~ N(0, {'1' if options.scaling == 'unit' else '1/m'})."
        )
        extra = {}
        extra["chunk_size"] = options.chunk_size or options.seeds
        if options.bucket_ratio is not None:
            extra["bucket_ratio"] = options.bucket_ratio
        ds = sweep(
            grid,
            dynamics=GradientDescent(options.step_size),
            num_steps=options.max_steps,
            stop=LossBelow(options.tol),
            instance=Instance(scaling=options.scaling),
            out=out,
            seed=options.seed,
            shard=options.shard,
            progress=options.progress,
            **extra,
        )
    wall = time.perf_counter() - start
    paths = {"dataset": out / "results.nc"}
    if not bool(ds.attrs.get("complete", 0)):
        log(
            "This sweep is not complete (a shard): no figure. Join the shards' folders with "
            "`--merge DIR ...` to draw it."
        )
        return paths
    paths["figure"], fitted = _figure(ds, name, y, law, out)
    paths["summary"] = out / "summary.txt"
    paths["summary"].write_text(_summary(ds, y, law, fitted, None if merge else wall))
    return paths


def fig1(
    options: SSVMOptions | None = None,
    *,
    quick: bool = False,
    merge: list[str | pathlib.Path] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, pathlib.Path]:
    """P1 Figure 1: success frequency over the width `k` and the signal size `n` at fixed `m`,
    with the fitted line `k ∝ n²`.

    **Arguments:**

    - `options`: the [`flowdip.experiments.ssvm.SSVMOptions`][] (default:
      `SSVMOptions.fig1(quick)`).
    - `quick`: the small grid, when `options` is not given.
    - `merge`: folders written by shards of this sweep: join them into `options.out` and draw
      the figure, instead of running.
    - `log`: where progress messages go.

    **Returns:** the paths written: `dataset` (`results.nc`), and for a complete sweep `figure`
    (`ssvm-fig1.png`) and `summary` (`summary.txt`, the frequency table and the fit).
    """
    options = SSVMOptions.fig1(quick) if options is None else options
    return _reproduce(options, "Fig 1", "n", "k ∝ n²", merge, log)


def fig2(
    options: SSVMOptions | None = None,
    *,
    quick: bool = False,
    merge: list[str | pathlib.Path] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, pathlib.Path]:
    """P1 Figure 2: success frequency over the width `k` and the number of measurements `m`
    at fixed `n`, with the fitted line `k ∝ m`.

    **Arguments:** as for [`flowdip.experiments.ssvm.fig1`][] (default options:
    `SSVMOptions.fig2(quick)`).

    **Returns:** the paths written: `dataset`, and for a complete sweep `figure`
    (`ssvm-fig2.png`) and `summary`.
    """
    options = SSVMOptions.fig2(quick) if options is None else options
    return _reproduce(options, "Fig 2", "m", "k ∝ m", merge, log)
