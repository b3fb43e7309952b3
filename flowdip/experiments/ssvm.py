"""Reproductions of the two experiments of P1 (Buskulic, Fadili, Quéau, SSVM 2023, §4):
`flowdip reproduce ssvm-fig1` and `flowdip reproduce ssvm-fig2`, one options class each
([`Fig1Options`][flowdip.experiments.ssvm.Fig1Options],
[`Fig2Options`][flowdip.experiments.ssvm.Fig2Options]; the protocol and the grids are those of
[`SSVMOptions`][flowdip.experiments.ssvm.SSVMOptions]).

Files (under `out`): `results.nc` (the sweep dataset, with its resumable chunks), and for a
complete sweep `ssvm-fig1.png` or `ssvm-fig2.png` (the phase diagram and the fitted law) and
`summary.txt` (the frequency table and the fit).
"""

import json
import pathlib
import time
from collections.abc import Callable

import jax
import matplotlib.pyplot as plt
import numpy as np

from .. import plot
from .._dynamics import GradientDescent, LossBelow
from .._sweep import Instance, load_dataset, merge_sweeps, sweep
from ._folder import read_record
from ._p1 import (
    Fig1Options as Fig1Options,
    Fig2Options as Fig2Options,
    FIGURES,
    SSVMOptions as SSVMOptions,
)


#: Name of each figure in titles and file names.
_NAMES = {"fig1": "Fig 1", "fig2": "Fig 2"}


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


def _draw(ds, figure: str, out: pathlib.Path, wall: float | None) -> dict[str, pathlib.Path]:
    y, law = FIGURES[figure]
    paths = {}
    paths["figure"], fitted = _figure(ds, _NAMES[figure], y, law, out)
    paths["summary"] = out / "summary.txt"
    paths["summary"].write_text(_summary(ds, y, law, fitted, wall))
    return paths


def run(options: SSVMOptions, log: Callable[[str], None] = print) -> dict[str, pathlib.Path]:
    """Runs the sweep of one P1 figure (or joins its shards' folders, with `options.merge`)
    and draws its phase diagram with the fitted line (`k ∝ n²` for Figure 1, `k ∝ m` for
    Figure 2).

    **Arguments:**

    - `options`: a [`Fig1Options`][flowdip.experiments.ssvm.Fig1Options] or
      [`Fig2Options`][flowdip.experiments.ssvm.Fig2Options].
    - `log`: where progress messages go.

    **Returns:** the paths written: `dataset` (`results.nc`), and for a complete sweep
    `figure` (`ssvm-fig1.png` or `ssvm-fig2.png`) and `summary` (`summary.txt`).
    """
    if not jax.config.read("jax_enable_x64"):
        raise RuntimeError(
            "The P1 protocol needs float64 (a loss threshold of 1e-7): call "
            "`jax.config.update('jax_enable_x64', True)` first."
        )
    out = options.out
    name = _NAMES[options.figure]
    start = time.perf_counter()
    if options.merge:
        ds = merge_sweeps(options.merge, out=out)
        log(f"Merged {len(options.merge)} folder(s) into {out}.")
    else:
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
    return paths | _draw(ds, options.figure, out, None if options.merge else wall)


def redraw(folder: str | pathlib.Path) -> dict[str, pathlib.Path]:
    """Redraws the phase diagram and the summary from `results.nc` in `folder`.

    **Returns:** the paths written: `figure` and `summary`.
    """
    folder = pathlib.Path(folder)
    figure = "fig2" if read_record(folder)["experiment"] == "ssvm-fig2" else "fig1"
    ds = load_dataset(folder / "results.nc")
    if not bool(ds.attrs.get("complete", 0)):
        raise ValueError(
            f"{folder} holds an incomplete sweep (a shard): no figure. Join the shards' "
            "folders with `--merge DIR ...` first."
        )
    return _draw(ds, figure, folder, None)
