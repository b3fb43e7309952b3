"""`flowdip reproduce flow-vs-descent-phase`: does the P1 protocol test the flow the theorems
are about?

The theorems of P1/P2 are about the gradient flow; the P1 experiments run gradient descent with
a fixed step of 1. On the grids of the P1 reproductions (`ssvm-fig1`, `ssvm-fig2`, same keys,
so the same `θ₀`, `A` and `x̄` run by run) this experiment runs both:

- **descent**: the P1 protocol (GD with step `η`, stop at loss < `tol` or after `max_steps`);
- **flow**: the gradient flow (Diffrax Tsit5, float64, max-norm error control), stopped at
  loss < `tol` or at the horizon `t1 = max_steps · η`, with a per-run step budget so that
  stiff runs that do not converge end;

and draws the two phase diagrams side by side with a third showing where they disagree. Over
the descent diagram: the contour where the per-cell median of the normalised sharpness at
initialisation `η·λ_max(∇²F(θ₀))` equals 2, and hatching where most runs' loss rose at some
step. For a few cells, a figure follows one descent run and the flow run from the same
initialisation (loss, `η·λ_max` along the descent, parameter gap). With `scan`, the descent is
repeated at other step sizes on the same grid and horizon (the flow sweep does not depend on
`η` and is run once), to find the largest `η` at which descent and flow agree.

Files (under `out`): `<fig>/descent/`, `<fig>/flow/` (resumable sweep folders, each with
`results.nc`), `phase.png`, `runs.png`, `scan.png` (with a scan), `summary.txt`.
"""

import dataclasses
import json
import os
import pathlib
import time
from collections.abc import Callable, Sequence

import jax
import matplotlib.lines
import matplotlib.patches
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np

from .. import plot
from .._analysis.compare import compare
from .._analysis.phase import disagreement
from .._analysis.sharpness import sharpness_along
from .._dynamics import GradientDescent, GradientFlow, LossBelow
from .._solve import RESULTS, solve
from .._sweep import Grid, Instance, reusable_sweep, run_key, sweep
from . import ssvm


#: The two grids: the P1 reproductions' (`y` axis, fitted law).
FIGURES = {"fig1": ("n", "k ∝ n²"), "fig2": ("m", "k ∝ m")}


@dataclasses.dataclass(frozen=True)
class PhaseOptions:
    """Every choice of the flow-vs-descent phase experiment.

    **Arguments:**

    - `figures`: which grids, among `"fig1"` (P1 Figure 1: `m = 10`, `n` and `k` vary) and
      `"fig2"` (Figure 2: `n = 40`, `m` and `k` vary); the grids and keys are those of
      [`flowdip.experiments.ssvm.SSVMOptions`][].
    - `quick`: the reproductions' quick 5 × 5 grids (4 seeds, 2000 steps).
    - `seeds`: runs per cell (default: the grid's, 50 for the full grids).
    - `step_size`: the descent's `η` (P1: 1).
    - `tol`: success threshold on the loss (P1: 1e-7).
    - `max_steps`: the descent's step cap (P1: 25 000); the flow's horizon is `max_steps · η`.
    - `flow_rtol`, `flow_atol`, `flow_budget`: the flow's tolerances and per-run step budget.
    - `scan`: other step sizes for the descent, each run with the step cap that keeps the
      horizon `max_steps · step_size` (empty: no scan).
    - `cells`: cells of the runs figure as `(figure, n, m, k, seed)`; default: chosen from the
      results (the cells where the two diagrams disagree most, and one where both succeed).
    - `descent_from`: `{figure: folder}` of descent sweeps already run with the P1 protocol
      (e.g. `results/ssvm-fig1` of `flowdip reproduce ssvm-fig1`): their results are used as
      they are when their arguments match (no `loss_rose` then: the hatching is left out).
    - `out`: output folder. `progress`: progress bars. `seed`: base seed of the run keys.
    """

    figures: tuple[str, ...] = ("fig1", "fig2")
    quick: bool = False
    seeds: int | None = None
    step_size: float = 1.0
    tol: float = 1e-7
    max_steps: int | None = None
    flow_rtol: float = 1e-6
    flow_atol: float = 1e-9
    flow_budget: int | None = None
    scan: tuple[float, ...] = ()
    cells: tuple[tuple[str, int, int, int, int], ...] | None = None
    descent_from: dict | None = None
    out: pathlib.Path | None = None
    progress: bool = True
    seed: int = 0

    def __post_init__(self):
        figures = (self.figures,) if isinstance(self.figures, str) else tuple(self.figures)
        bad = [f for f in figures if f not in FIGURES]
        if not figures or bad:
            raise ValueError(f"figures must be among {list(FIGURES)}; got {figures!r}.")
        object.__setattr__(self, "figures", figures)
        for name in ("step_size", "tol", "flow_rtol", "flow_atol"):
            value = float(getattr(self, name))
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number; got {name}={value!r}.")
            object.__setattr__(self, name, value)
        scan = tuple(float(v) for v in self.scan)
        if any(not (np.isfinite(v) and v > 0) for v in scan):
            raise ValueError(f"scan must hold positive step sizes; got {scan!r}.")
        object.__setattr__(self, "scan", scan)
        for name in ("seeds", "max_steps", "flow_budget"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
                raise ValueError(f"{name} must be an integer >= 1; got {name}={value!r}.")
        if self.out is None:
            name = "flow-vs-descent-phase" + ("-quick" if self.quick else "")
            object.__setattr__(self, "out", pathlib.Path("results") / name)
        object.__setattr__(self, "out", pathlib.Path(self.out))

    def ssvm(self, figure: str) -> ssvm.SSVMOptions:
        """The P1 reproduction's options for `figure` (grid, seeds, cap), with the overrides."""
        overrides = dict(step_size=self.step_size, tol=self.tol, seed=self.seed)
        if self.seeds is not None:
            overrides["seeds"] = int(self.seeds)
        if self.max_steps is not None:
            overrides["max_steps"] = int(self.max_steps)
        make = {"fig1": ssvm.SSVMOptions.fig1, "fig2": ssvm.SSVMOptions.fig2}[figure]
        return make(quick=self.quick, out=self.out / figure / "descent", **overrides)

    def flow(self, cap: int) -> GradientFlow:
        """The flow: Tsit5, max-norm control, budget `flow_budget` (default: the step cap,
        at most 10 000)."""
        budget = self.flow_budget or min(cap, 10_000)
        return GradientFlow.for_sweeps(rtol=self.flow_rtol, atol=self.flow_atol, max_steps=budget)


def _sweep_kwargs(opts: ssvm.SSVMOptions, progress: bool) -> dict:
    extra = dict(chunk_size=opts.chunk_size or opts.seeds)
    if opts.bucket_ratio is not None:
        extra["bucket_ratio"] = opts.bucket_ratio
    return dict(
        stop=LossBelow(opts.tol),
        instance=Instance(scaling=opts.scaling),
        seed=opts.seed,
        progress=progress,
        diagnostics=True,
        **extra,
    )


def _reusable(folder, grid: Grid, opts: ssvm.SSVMOptions):
    """A complete descent sweep in `folder` run with exactly this protocol and at least
    `grid.seeds` seeds, cut to its first `grid.seeds` seeds; or None."""
    return reusable_sweep(
        folder,
        grid,
        dynamics=GradientDescent(opts.step_size),
        num_steps=opts.max_steps,
        stop=LossBelow(opts.tol),
        instance=Instance(scaling=opts.scaling),
        seed=opts.seed,
    )


def run_descent(options: PhaseOptions, figure: str, step_size: float | None = None, log=print):
    """The descent sweep of one grid at `step_size` (default `options.step_size`; another step
    size keeps the horizon, so the cap becomes `max_steps · options.step_size / step_size`).

    **Returns:** the sweep dataset (with `sharpness0` and `loss_rose`, unless it was reused
    from `options.descent_from`).
    """
    opts = options.ssvm(figure)
    eta = opts.step_size if step_size is None else float(step_size)
    cap = opts.max_steps if step_size is None else round(opts.max_steps * opts.step_size / eta)
    if step_size is None and options.descent_from and figure in options.descent_from:
        ds = _reusable(options.descent_from[figure], opts.grid, opts)
        if ds is not None:
            log(
                f"  descent: reusing {options.descent_from[figure]} (same grid and protocol; "
                f"its first {opts.seeds} seeds)"
            )
            return ds
        given = pathlib.Path(options.descent_from[figure])
        why = (
            "does not match this protocol"
            if (given / "results.nc").exists()
            else "holds no finished sweep (no results.nc)"
        )
        log(f"  descent: {given} {why}; running")
    folder = opts.out if step_size is None else options.out / figure / f"descent-eta{eta:g}"
    log(f"  descent: GD η = {eta:g}, cap {cap} steps → {folder}")
    return sweep(
        opts.grid,
        dynamics=GradientDescent(eta),
        num_steps=cap,
        out=folder,
        **_sweep_kwargs(opts, options.progress),
    )


_FLOW_CHUNK = 50  # runs per flow chunk at least (whole cells), unless chunk_size is given


def run_flow(options: PhaseOptions, figure: str, log=print):
    """The flow sweep of one grid, horizon `max_steps · step_size`, on the descent's keys."""
    opts = options.ssvm(figure)
    flow = options.flow(opts.max_steps)
    t1 = opts.max_steps * opts.step_size
    folder = options.out / figure / "flow"
    log(
        f"  flow: Tsit5 rtol {flow.rtol:g} atol {flow.atol:g}, horizon {t1:g}, budget "
        f"{flow.max_steps} steps per run → {folder}"
    )
    kwargs = _sweep_kwargs(opts, options.progress)
    if opts.chunk_size is None:
        # Whole cells of at least _FLOW_CHUNK runs: with few seeds per cell, a cell-sized
        # chunk would pay the solver loop's per-step overhead for a handful of runs.
        kwargs["chunk_size"] = opts.seeds * max(1, _FLOW_CHUNK // opts.seeds)
    return sweep(opts.grid, dynamics=flow, t1=t1, out=folder, **kwargs)


# -- per-cell statistics -----------------------------------------------------------------------
def cell_statistics(descent, flow, step_size: float) -> dict:
    """Per cell `(n, m, k)`: the comparison of [`flowdip.disagreement`][], the median of
    `η·λ_max(∇²F(θ₀))` over the seeds, the fraction of descents whose loss rose at some step
    (NaN when not recorded) and the fraction of flow runs that ended on their step budget
    (neither converged nor at the horizon)."""
    stats = disagreement(descent, flow)
    seeds = stats["seeds"]
    source = descent if "sharpness0" in descent else flow
    sharp = source["sharpness0"].isel(seed=slice(0, seeds)).values
    stats["eta_lambda"] = step_size * np.median(sharp, axis=-1)
    if "loss_rose" in descent:
        stats["rose"] = descent["loss_rose"].isel(seed=slice(0, seeds)).values.mean(-1)
    else:
        stats["rose"] = np.full(stats["descent"].shape, np.nan)
    f = flow.isel(seed=slice(0, seeds))
    budget = (f["result"].values == int(RESULTS.max_steps_reached._value)) & (
        f["stop_time"].values < 0.999 * json.loads(f.attrs["config"])["horizon"]
    )
    stats["flow_budget"] = budget.mean(-1)
    return stats


def _squeeze(stats: dict, figure: str) -> tuple[dict, str]:
    """2-d tables `(y, k)` of a grid where one of `n`, `m` is fixed."""
    y, _ = FIGURES[figure]
    axis = 1 if y == "n" else 0  # drop the fixed one of (n, m)
    out = {}
    for name, value in stats.items():
        out[name] = np.take(value, 0, axis=axis) if isinstance(value, np.ndarray) else value
    return out, y


# -- figures ------------------------------------------------------------------------------------
def _edges(values):
    return plot._cell_edges(np.asarray(values, float), True)


def _log_axes(ax):
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(matplotlib.ticker.LogFormatter())
        axis.set_minor_formatter(matplotlib.ticker.LogFormatter(labelOnlyBase=False))


def phase_figure(results: dict, options: PhaseOptions, path: pathlib.Path) -> pathlib.Path:
    """Descent (with the sharpness contour and the loss-rise hatching), flow, and their
    difference, one row per grid."""
    rows = len(results)
    fig, axes = plt.subplots(rows, 3, figsize=(17, 4.9 * rows), layout="constrained", squeeze=False)
    eta = options.step_size
    for row, (figure, (descent, flow, stats)) in enumerate(results.items()):
        y, law = FIGURES[figure]
        seeds = stats["seeds"]
        d2, _ = _squeeze(stats, figure)
        ks, ys = descent["k"].values, descent[y].values
        a, b, c = axes[row]
        plot.phase_diagram(descent.isel(seed=slice(0, seeds)), x="k", y=y, ax=a, theory=law)
        a.set_title(f"{figure}: gradient descent η = {eta:g} ({seeds} runs per cell)")
        handles = list(a.get_legend().legend_handles) if a.get_legend() else []
        el = d2["eta_lambda"]
        if np.nanmin(el) >= 2 or np.nanmax(el) < 2:
            side = ">" if np.nanmin(el) >= 2 else "<"
            a.set_title(f"{a.get_title()}\nmedian η·λ_max(θ₀) {side} 2 in every cell")
        if len(ks) > 1 and len(ys) > 1 and np.nanmin(el) < 2 < np.nanmax(el):
            a.contour(ks, ys, el, levels=[2.0], colors="red", linewidths=2, linestyles="-")
            handles.append(
                matplotlib.lines.Line2D([], [], color="red", lw=2, label="median η·λ_max(θ₀) = 2")
            )
        rose = d2["rose"]
        if np.isfinite(rose).all() and rose.max() >= 0.5:
            # Hatched, unfilled cells: the success colours stay readable underneath.
            xe, ye = _edges(ks), _edges(ys)
            for jj, ii in zip(*np.nonzero(rose >= 0.5)):
                a.add_patch(
                    matplotlib.patches.Rectangle(
                        (xe[ii], ye[jj]),
                        xe[ii + 1] - xe[ii],
                        ye[jj + 1] - ye[jj],
                        fill=False,
                        hatch="///",
                        edgecolor="0.6",
                        lw=0,
                    )
                )
            handles.append(
                matplotlib.patches.Patch(
                    facecolor="none",
                    edgecolor="0.6",
                    hatch="///",
                    label="loss rose in ≥ 50% of runs",
                )
            )
        if handles:
            legend = a.legend(handles=handles, loc="lower right", fontsize="small", framealpha=0.8)
            legend.get_frame().set_facecolor("0.85")
        plot.phase_diagram(flow.isel(seed=slice(0, seeds)), x="k", y=y, ax=b, theory=law)
        budget = float(np.mean(d2["flow_budget"]))
        b.set_title(
            f"{figure}: gradient flow, horizon {json.loads(flow.attrs['config'])['horizon']:g}"
            f"\n(ended on the step budget: {100 * budget:.1f}% of runs)"
        )
        _log_axes(c)
        mesh = c.pcolormesh(
            _edges(ks), _edges(ys), d2["difference"], cmap="RdBu_r", vmin=-1, vmax=1
        )
        fig.colorbar(mesh, ax=c, label="descent − flow success frequency")
        for j, yv in enumerate(ys):
            for i, kv in enumerate(ks):
                if d2["mismatch"][j, i] > 0:
                    c.text(
                        kv,
                        yv,
                        f"{100 * d2['mismatch'][j, i]:.0f}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="black",
                    )
        c.set_xlabel(plot._AXIS_LABELS["k"])
        c.set_ylabel(plot._AXIS_LABELS[y])
        c.set_title(f"{figure}: where they disagree\n(numbers: % of runs with different outcomes)")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def choose_cells(results: dict, options: PhaseOptions) -> list[tuple[str, int, int, int, int]]:
    """Up to three cells for the runs figure: the cell where descent beats the flow most, the
    one where the flow beats descent most (each with a seed whose outcomes differ), and the
    cell with the largest `η·λ_max` where both always succeed."""
    cells = []
    for figure, (descent, flow, stats) in results.items():
        diff = stats["difference"]
        seeds = stats["seeds"]
        d = descent["converged"].values[..., :seeds].astype(bool)
        f = flow["converged"].values[..., :seeds].astype(bool)
        for sign in (1, -1):
            if np.max(sign * diff) <= 0:
                continue
            idx = np.unravel_index(np.argmax(sign * diff), diff.shape)
            s = int(np.argmax(d[idx] != f[idx]))
            cells.append((figure, *(int(descent[k].values[i]) for k, i in zip("nmk", idx)), s))
        both = (stats["descent"] == 1) & (stats["flow"] == 1)
        if both.any():
            el = np.where(both, stats["eta_lambda"], -np.inf)
            idx = np.unravel_index(np.argmax(el), el.shape)
            cells.append((figure, *(int(descent[k].values[i]) for k, i in zip("nmk", idx)), 0))
        if len(cells) >= 3:
            break
    return cells[:3]


def runs_figure(cells, options: PhaseOptions, path: pathlib.Path) -> tuple[pathlib.Path, list]:
    """One row per cell: the loss of the descent and of the flow from the same initialisation,
    `η·λ_max` along the descent, and the parameter gap `‖θ_GD(τη) − θ(τη)‖`."""
    rows = max(len(cells), 1)
    fig, axes = plt.subplots(rows, 3, figsize=(15, 3.6 * rows), layout="constrained", squeeze=False)
    notes = []
    for row, (figure, n, m, k, s) in enumerate(cells):
        opts = options.ssvm(figure)
        eta, cap = opts.step_size, opts.max_steps
        obj = Instance(scaling=opts.scaling).objective(
            run_key(opts.seed, n, m, s), n=n, m=m, k=k, d=opts.d
        )
        steps = np.unique(np.concatenate([[0], np.round(np.geomspace(1, cap, 120))]))
        stop = LossBelow(opts.tol)
        gd = solve(obj, GradientDescent(eta), num_steps=cap, ts=steps * eta, stop=stop, throw=False)
        flow = options.flow(cap)
        # The flow also on a fine geometric grid: where it is fast it converges before the
        # descent's first step (t = η), and its loss would otherwise be one point.
        fine = np.geomspace(eta / 100, cap * eta, 200)
        flow_ts = np.unique(np.concatenate([steps * eta, fine]))
        gf = solve(obj, flow, t1=cap * eta, ts=flow_ts, stop=stop, throw=False)
        cmp = compare(gf, gd)
        sharp = eta * np.asarray(sharpness_along(obj, gd))
        a, b, c = axes[row]
        for traj, label, style in (
            (gd, f"GD η={eta:g}", {}),
            (gf, "gradient flow", dict(color="black", ls="--")),
        ):
            ok = np.asarray(traj.valid)
            t, loss = np.asarray(traj.ts)[ok], np.asarray(traj.loss)[ok]
            # t = 0 is drawn at η/200 on the log axis.
            a.loglog(np.maximum(t, eta / 200), loss, label=label, **style)
        a.axhline(opts.tol, color="gray", lw=0.8, ls=":")
        a.set_ylabel("loss F(θ)")

        def outcome(traj):
            return (
                f"converged at t = {float(traj.stop_time):.3g}"
                if bool(traj.converged)
                else (f"not converged (stopped at t = {float(traj.stop_time):.3g})")
            )

        a.set_title(
            f"{figure}, n={n} m={m} k={k}, seed {s}\nGD {outcome(gd)}; flow {outcome(gf)}",
            fontsize="small",
        )
        ok = np.asarray(gd.valid)
        t = np.asarray(gd.ts)[ok]
        b.semilogx(np.maximum(t, eta / 2), sharp[ok], label="η·λ_max(∇²F(θ_τ))")
        b.axhline(2.0, color="red", lw=1, ls="--", label="2 (stability edge)")
        b.set_ylabel("η·λ_max")
        cv = np.asarray(cmp.valid)
        gap_t, gap = np.asarray(cmp.ts)[cv][1:], np.asarray(cmp.param_gap)[cv][1:]
        c.semilogx(gap_t, gap, "o-", ms=3)
        c.set_ylabel("‖θ_GD(τη) − θ(τη)‖")
        if gap.size == 0:
            c.text(
                0.5,
                0.5,
                f"the flow {'converged' if bool(gf.converged) else 'stopped'} at "
                f"t = {float(gf.stop_time):.3g},\n"
                f"before the descent's first step (t = η = {eta:g}):\nno common time after t = 0",
                transform=c.transAxes,
                ha="center",
                va="center",
            )
            c.set_xlim(eta / 2, 2 * eta)
        c.set_title("parameter gap (while both run)", fontsize="small")
        b.set_title("normalised sharpness along the descent", fontsize="small")
        for ax in (a, b, c):
            ax.set_xlabel("time t = τ·η")
            ax.grid(True, which="major", alpha=0.3)
        a.legend(fontsize="small")
        b.legend(fontsize="small")
        rose = bool(gd.loss_rose)
        notes.append(
            f"{figure} n={n} m={m} k={k} seed {s}: GD converged={bool(gd.converged)} "
            f"(t={float(gd.stop_time):g}, loss rose: {rose}), flow converged={bool(gf.converged)} "
            f"(t={float(gf.stop_time):.4g}); η·λ_max at θ₀ {sharp[0]:.3g}, max along GD "
            f"{np.nanmax(sharp):.3g}; "
            + (
                f"gap at the last common time t = {gap_t[-1]:g}: {gap[-1]:.3g}"
                if gap.size
                else "no common time after t = 0 (the flow ended before the first step)"
            )
        )
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path, notes


def scan_figure(scan: dict, path: pathlib.Path) -> pathlib.Path:
    """Disagreement against the step size: mismatched runs and the largest cell difference."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for figure, rows in scan.items():
        etas = np.asarray([r[0] for r in rows])
        a.semilogx(etas, [100 * r[1] for r in rows], "o-", label=figure)
        b.semilogx(etas, [r[2] for r in rows], "o-", label=figure)
    a.set_ylabel("runs whose outcome differs from the flow (%)")
    b.set_ylabel("largest |descent − flow| frequency in a cell")
    etas = sorted({r[0] for rows in scan.values() for r in rows})
    for ax in (a, b):
        ax.set_xticks(etas, [f"{v:g}" for v in etas])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel("descent step size η (same horizon)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    a.set_title("Descent against flow over the whole grid")
    b.set_title("Worst cell")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _table(name: str, values: np.ndarray, ys, ks, y: str, fmt: str) -> list[str]:
    lines = [f"{name} (rows: {y}, columns: k)", f"{y:>6} |" + "".join(f"{int(k):>7}" for k in ks)]
    for j, yv in enumerate(ys):
        lines.append(f"{int(yv):>6} |" + "".join(format(v, fmt) for v in values[j]))
    return lines + [""]


def _summary(results: dict, options: PhaseOptions, notes, scan, walls) -> str:
    lines = [
        f"flow vs descent phase diagrams; η = {options.step_size:g}, tol {options.tol:g}",
        "",
    ]
    for figure, (descent, flow, stats) in results.items():
        d2, y = _squeeze(stats, figure)
        ks, ys = descent["k"].values, descent[y].values
        config = json.loads(flow.attrs["config"])
        lines.append(
            f"== {figure}: {len(ys)} {y} × {len(ks)} k cells, {stats['seeds']} seeds; "
            f"descent cap {json.loads(descent.attrs['config'])['horizon']}, flow horizon "
            f"{config['horizon']:g}, flow {config['dynamics']}"
        )
        lines += _table("descent success", d2["descent"], ys, ks, y, "7.2f")
        lines += _table("flow success", d2["flow"], ys, ks, y, "7.2f")
        lines += _table("descent − flow", d2["difference"], ys, ks, y, "7.2f")
        lines += _table("runs with different outcomes", d2["mismatch"], ys, ks, y, "7.2f")
        lines += _table("median η·λ_max(θ₀)", d2["eta_lambda"], ys, ks, y, "7.3g")
        lines += _table("fraction of descents whose loss rose", d2["rose"], ys, ks, y, "7.2f")
        lines += _table("flow runs ended on the budget", d2["flow_budget"], ys, ks, y, "7.2f")
        el, mm = d2["eta_lambda"], d2["mismatch"]
        for label, region in (("η·λ_max < 2", el < 2), ("η·λ_max ≥ 2", el >= 2)):
            if region.any():
                lines.append(
                    f"{label}: {int(region.sum())} cells; runs with different outcomes "
                    f"{100 * mm[region].mean():.1f}%; cells with |descent − flow| > 0.1: "
                    f"{int((np.abs(d2['difference'][region]) > 0.1).sum())}; descent loss rose in "
                    f"{100 * np.nanmean(d2['rose'][region]):.1f}% of runs"
                )
        lines.append(
            f"whole grid: runs with different outcomes {100 * mm.mean():.2f}%; flow runs ended on "
            f"the budget {100 * d2['flow_budget'].mean():.2f}%"
        )
        lines.append("")
    if notes:
        lines += ["runs figure:"] + [f"  {note}" for note in notes] + [""]
    for figure, rows in scan.items():
        lines.append(f"step-size scan, {figure} (same horizon, flow run once):")
        lines.append("     η | runs differing | cells |Δ|>0.1 | largest |Δ|")
        for eta, frac, worst, cells in rows:
            lines.append(f"{eta:>6g} | {100 * frac:13.2f}% | {cells:13d} | {worst:.2f}")
        agree = [r[0] for r in rows if r[1] == 0]
        lines.append(f"largest η with every run agreeing: {max(agree) if agree else 'none'}")
        lines.append("")
    for name, (wall, cpu) in walls.items():
        lines.append(f"time of {name}: wall {wall:.1f} s, process CPU {cpu:.1f} s")
    return "\n".join(lines) + "\n"


def run(options: PhaseOptions | None = None, log: Callable[[str], None] = print) -> dict:
    """Runs the experiment; see the module docstring.

    **Returns:** the paths written: `phase`, `runs`, `summary`, (`scan`), and the sweeps'
    `results.nc` as `<figure>-descent`, `<figure>-flow`.
    """
    options = PhaseOptions() if options is None else options
    if not jax.config.read("jax_enable_x64"):
        raise RuntimeError(
            "This experiment needs float64 (a loss threshold of 1e-7): call "
            "`jax.config.update('jax_enable_x64', True)` first."
        )
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    walls = {}
    clock = (time.perf_counter(), time.process_time())
    results, paths = {}, {}
    for figure in options.figures:
        opts = options.ssvm(figure)
        log(
            f"{figure}: {len(opts.n)} n × {len(opts.m)} m × {len(opts.k)} k cells, "
            f"{opts.seeds} runs each"
        )
        descent = run_descent(options, figure, log=log)
        flow = run_flow(options, figure, log=log)
        results[figure] = (descent, flow, cell_statistics(descent, flow, opts.step_size))
        paths[f"{figure}-descent"] = opts.out / "results.nc"
        paths[f"{figure}-flow"] = out / figure / "flow" / "results.nc"
    walls["the sweeps"] = (time.perf_counter() - clock[0], time.process_time() - clock[1])
    log("Drawing the phase diagrams and the runs of chosen cells.")
    paths["phase"] = phase_figure(results, options, out / "phase.png")
    cells = list(options.cells) if options.cells is not None else choose_cells(results, options)
    paths["runs"], notes = runs_figure(cells, options, out / "runs.png")
    scan = {}
    if options.scan:
        start = (time.perf_counter(), time.process_time())
        for figure, (main, flow, _) in results.items():
            rows = []
            for eta in sorted(set(options.scan) | {options.step_size}):
                if eta == options.step_size:
                    descent = main
                else:
                    descent = run_descent(options, figure, step_size=eta, log=log)
                stats = disagreement(descent, flow)
                diff = np.abs(stats["difference"])
                rows.append(
                    (
                        eta,
                        float(stats["mismatch"].mean()),
                        float(diff.max()),
                        int((diff > 0.1).sum()),
                    )
                )
            scan[figure] = rows
        paths["scan"] = scan_figure(scan, out / "scan.png")
        walls["the scan"] = (time.perf_counter() - start[0], time.process_time() - start[1])
    walls["the whole call"] = (time.perf_counter() - clock[0], time.process_time() - clock[1])
    paths["summary"] = out / "summary.txt"
    paths["summary"].write_text(_summary(results, options, notes, scan, walls))
    return paths


def options_from(
    *, quick: bool, overrides: dict, descent_from: Sequence[os.PathLike] | None = None
) -> PhaseOptions:
    """Options from command-line values (`descent_from`: folders, matched to the figures in
    order)."""
    opts = PhaseOptions(quick=quick, **overrides)
    if descent_from:
        if len(descent_from) > len(opts.figures):
            raise ValueError(
                f"--descent-from has {len(descent_from)} folders for {len(opts.figures)} grids."
            )
        missing = [str(p) for p in descent_from if not pathlib.Path(p).is_dir()]
        if missing:
            # Caught here, not after the flow: a mistyped folder would otherwise cost a whole
            # descent sweep before anyone noticed.
            raise ValueError(f"--descent-from: no such folder: {', '.join(missing)}.")
        mapping = dict(zip(opts.figures, (pathlib.Path(p) for p in descent_from)))
        opts = dataclasses.replace(opts, descent_from=mapping)
    return opts
