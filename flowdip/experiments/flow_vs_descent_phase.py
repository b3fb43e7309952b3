"""`flowdip reproduce flow-vs-descent-phase`: does the P1 protocol test the flow the theorems
are about?

The theorems of P1/P2 are about the gradient flow; the P1 experiments run gradient descent with
a fixed step of 1. On the grids of the P1 reproductions (`ssvm-fig1`, `ssvm-fig2`, same keys,
so the same `θ₀`, `A` and `x̄` run by run) this experiment runs both:

- **descent**: the P1 protocol (GD with step `η`, stop at loss < `tol` or after `max_steps`);
- **flow**: the gradient flow (float64, max-norm error control; by default the stiff solver
  [`flowdip.GradientFlow.stiff`][], whose step count does not grow with `λ_max`), stopped at
  loss < `tol` or at the horizon `t1 = max_steps · η`, with a per-run step budget; with
  `long_horizon`, once more to that horizon, to tell late convergence from none;

and draws the two phase diagrams side by side with a third showing where they disagree. Over
the descent diagram: the contour where the per-cell median of the normalised sharpness at
initialisation `η·λ_max(∇²F(θ₀))` equals 2, and hatching where most runs' loss rose at some
step. For a few cells, a figure follows one descent run and the flow run from the same
initialisation (loss, `η·λ_max` along the descent, parameter gap). With `scan`, the descent is
repeated at other step sizes on the same grid and horizon (the flow sweep does not depend on
`η` and is run once), to find the largest `η` at which descent and flow agree.

Files (under `out`): `<fig>/descent/`, `<fig>/flow/`, `<fig>/flow-long/` (resumable sweep
folders, each with `results.nc`; `<fig>/descent-reused.nc` for a descent sweep taken from
`descent_from`), `phase.png`, `runs.png`, `scan.png` (with a scan), `horizon.png` (with a long
horizon), `summary.txt`, and `data.npz` (the runs of
the chosen cells, the scan and the timings, which `flowdip plot DIR` redraws from).
"""

import json
import pathlib
import time
from collections.abc import Callable

import jax
import numpy as np

from .._analysis.compare import compare
from .._analysis.phase import disagreement
from .._analysis.sharpness import sharpness_along
from .._dynamics import GradientDescent, LossBelow
from .._solve import solve
from .._sweep import (
    Grid,
    Instance,
    load_dataset,
    result_codes,
    reusable_sweep,
    run_key,
    save_dataset,
    sweep,
)

# The P1 protocol's options, under the name the functions below annotate them with.
from . import _p1 as ssvm
from ._folder import FolderError, load_tree, read_options, save_tree
from ._p1 import FIGURES as FIGURES
from ._phase_failing import failing_path, failing_summary, run_failing
from ._phase_figures import phase_figure, runs_figure, scan_figure, summary_text
from ._phase_horizon import horizon_figure, horizon_summary
from ._phase_options import Options as Options
from ._phase_reach import reach_path, reach_statistics, reach_summary, run_reach


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


def _not_reusable(folder: pathlib.Path) -> str:
    why = (
        "does not hold a finished descent sweep of this protocol (grid, instance, step, cap, "
        "stop rule and seed, at least --seeds seeds)"
        if (folder / "results.nc").exists()
        else "holds no finished sweep (no results.nc)"
    )
    return (
        f"--descent-from {folder} {why}; give another folder, or leave --descent-from out to "
        "run the descent sweep here."
    )


def check_descent_from(options: Options) -> None:
    """Refuses, before anything runs, a `descent_from` folder that cannot be reused (rather
    than silently running a sweep that may take most of an hour)."""
    for figure in options.figures:
        given = options.descent_folder(figure)
        if given is not None:
            opts = options.ssvm(figure)
            if _reusable(given, opts.grid, opts) is None:
                raise FolderError(_not_reusable(given))


def run_descent(options: Options, figure: str, step_size: float | None = None, log=print):
    """The descent sweep of one grid at `step_size` (default `options.step_size`; another step
    size keeps the horizon, so the cap becomes `max_steps · options.step_size / step_size`).

    **Returns:** the sweep dataset (with `sharpness0` and `loss_rose`, unless it was reused
    from `options.descent_from`).
    """
    opts = options.ssvm(figure)
    eta = opts.step_size if step_size is None else float(step_size)
    cap = opts.max_steps if step_size is None else round(opts.max_steps * opts.step_size / eta)
    given = options.descent_folder(figure)
    if step_size is None and given is not None:
        ds = _reusable(given, opts.grid, opts)
        if ds is None:  # refused up front by `run`; reached only by direct calls
            raise FolderError(_not_reusable(given))
        log(f"  descent: reusing {given} (same grid and protocol; its first {opts.seeds} seeds)")
        save_dataset(ds, options.out / figure / "descent-reused.nc")
        return ds
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


def run_flow(options: Options, figure: str, log=print, long: bool = False):
    """The flow sweep of one grid on the descent's keys, to the horizon `max_steps · η`
    (in `<figure>/flow`) or, with `long`, to `options.long_horizon` (in `<figure>/flow-long`)."""
    opts = options.ssvm(figure)
    flow = options.flow(opts.max_steps)
    t1 = options.long_horizon if long else opts.max_steps * opts.step_size
    folder = options.out / figure / ("flow-long" if long else "flow")
    log(
        f"  flow: {options.flow_solver}, rtol {flow.rtol:g} atol {flow.atol:g}, horizon "
        f"{t1:g}, budget {flow.max_steps} steps per run → {folder}"
    )
    kwargs = _sweep_kwargs(opts, options.progress)
    # The stiff flow's runs take 40 to 250 steps: too narrow a spread for dropping stopped
    # runs to pay for the compiled program each smaller batch needs (one per width bucket
    # instead of four).
    kwargs["compact"] = options.flow_solver != "stiff"
    if opts.chunk_size is None:
        # Whole cells of at least _FLOW_CHUNK runs: with few seeds per cell, a cell-sized
        # chunk would pay the solver loop's per-step overhead for a handful of runs.
        kwargs["chunk_size"] = opts.seeds * max(1, _FLOW_CHUNK // opts.seeds)
    grid = opts.grid
    if long:
        seeds = min(options.long_seeds, opts.seeds)
        grid = Grid(n=grid.n, m=grid.m, k=grid.k, seeds=seeds, d=grid.d)
        kwargs["chunk_size"] = seeds * max(1, _FLOW_CHUNK // seeds)
    return sweep(grid, dynamics=flow, t1=t1, out=folder, **kwargs)


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
    budget = (f["result"].values == result_codes()["max_steps_reached"]) & (
        f["stop_time"].values < 0.999 * json.loads(f.attrs["config"])["horizon"]
    )
    stats["flow_budget"] = budget.mean(-1)
    return stats


def choose_cells(results: dict, options: Options) -> list[tuple[str, int, int, int, int]]:
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


def run_cells(cells, options: Options) -> list[dict]:
    """For each cell `(figure, n, m, k, seed)`: one descent run and the flow run from the same
    initialisation, `η·λ_max` along the descent and the parameter gap, as arrays (what the
    runs figure draws)."""
    runs = []
    for figure, n, m, k, s in cells:
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
        run = dict(figure=figure, n=n, m=m, k=k, seed=s, eta=eta, tol=opts.tol)
        for name, traj in (("gd", gd), ("gf", gf)):
            ok = np.asarray(traj.valid)
            run |= {
                f"{name}_ts": np.asarray(traj.ts)[ok],
                f"{name}_loss": np.asarray(traj.loss)[ok],
                f"{name}_converged": bool(traj.converged),
                f"{name}_stop_time": float(traj.stop_time),
            }
        cv = np.asarray(cmp.valid)
        run |= dict(
            gd_loss_rose=bool(gd.loss_rose),
            sharpness=sharp[np.asarray(gd.valid)],
            gap_ts=np.asarray(cmp.ts)[cv][1:],
            gap=np.asarray(cmp.param_gap)[cv][1:],
        )
        runs.append(run)
    return runs


def run(options: Options, log: Callable[[str], None] = print) -> dict[str, pathlib.Path]:
    """Runs the experiment; see the module docstring.

    **Returns:** the paths written: `phase`, `runs`, `summary`, (`scan`), (`horizon`), `data`,
    and the sweeps' `results.nc` as `<figure>-descent`, `<figure>-flow` (`<figure>-flow-long`).
    """
    if not jax.config.read("jax_enable_x64"):
        raise RuntimeError(
            "This experiment needs float64 (a loss threshold of 1e-7): call "
            "`jax.config.update('jax_enable_x64', True)` first."
        )
    check_descent_from(options)
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    walls = {}
    clock = (time.perf_counter(), time.process_time())
    results, paths, longs, reaches, fails = {}, {}, {}, {}, {}
    for figure in options.figures:
        opts = options.ssvm(figure)
        log(
            f"{figure}: {len(opts.n)} n × {len(opts.m)} m × {len(opts.k)} k cells, "
            f"{opts.seeds} runs each"
        )
        descent = run_descent(options, figure, log=log)
        flow = run_flow(options, figure, log=log)
        results[figure] = (descent, flow, cell_statistics(descent, flow, opts.step_size))
        if figure in options.failing:
            fails[figure] = run_failing(options, figure, descent, log=log)
        if options.reach_seeds:
            reaches[figure] = run_reach(options, figure, log=log)
            results[figure][2]["reach"] = reach_statistics(
                reaches[figure], descent, flow, options.tol
            )["reach"]
        paths[f"{figure}-descent"] = opts.out / "results.nc"
        paths[f"{figure}-flow"] = out / figure / "flow" / "results.nc"
        if options.long_horizon is not None:
            longs[figure] = run_flow(options, figure, log=log, long=True)
            paths[f"{figure}-flow-long"] = out / figure / "flow-long" / "results.nc"
    walls["the sweeps"] = (time.perf_counter() - clock[0], time.process_time() - clock[1])
    log("Drawing the phase diagrams and the runs of chosen cells.")
    paths["phase"] = phase_figure(results, options, out / "phase.png")
    cells = list(options.cells) if options.cells is not None else choose_cells(results, options)
    runs = run_cells(cells, options)
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
        walls["the scan"] = (time.perf_counter() - start[0], time.process_time() - start[1])
    walls["the whole call"] = (time.perf_counter() - clock[0], time.process_time() - clock[1])
    paths["data"] = out / "data.npz"
    save_tree(paths["data"], dict(runs=runs, scan=json.dumps(scan), walls=json.dumps(walls)))
    extra = dict(longs=longs, reaches=reaches, fails=fails)
    return paths | _draw(options, results, runs, scan, walls, extra, phase=False)


def _draw(options, results, runs, scan, walls, extra: dict, phase: bool = True) -> dict:
    longs, reaches, fails = extra["longs"], extra["reaches"], extra["fails"]
    out, paths = options.out, {}
    if phase:
        paths["phase"] = phase_figure(results, options, out / "phase.png")
    paths["runs"], notes = runs_figure(runs, out / "runs.png")
    if scan:
        paths["scan"] = scan_figure(scan, out / "scan.png")
    text = summary_text(results, options, notes, scan, walls)
    if longs:
        paths["horizon"] = horizon_figure(results, longs, out / "horizon.png")
        text += "\n".join(horizon_summary(results, longs)) + "\n"
    if reaches:
        text += "\n".join(reach_summary(results, reaches, options.tol)) + "\n"
    if fails:
        text += "\n".join(failing_summary(fails)) + "\n"
    paths["summary"] = out / "summary.txt"
    paths["summary"].write_text(text)
    return paths


def redraw(folder: str | pathlib.Path) -> dict[str, pathlib.Path]:
    """Redraws the figures and the summary from the sweeps and `data.npz` saved in `folder`.

    **Returns:** the paths written: `phase`, `runs`, (`scan`), (`horizon`), `summary`.
    """
    folder = pathlib.Path(folder)
    options = read_options(folder, Options, out=folder, descent_from=())
    results = {}
    for figure in options.figures:
        descent = folder / figure / "descent" / "results.nc"
        if not descent.exists():
            descent = folder / figure / "descent-reused.nc"
        descent, flow = load_dataset(descent), load_dataset(folder / figure / "flow" / "results.nc")
        stats = cell_statistics(descent, flow, options.ssvm(figure).step_size)
        results[figure] = (descent, flow, stats)
    longs = {
        figure: load_dataset(folder / figure / "flow-long" / "results.nc")
        for figure in options.figures
        if options.long_horizon is not None
    }
    reaches = {}
    for figure in options.figures:
        if options.reach_seeds and reach_path(folder, figure).exists():
            reaches[figure] = load_dataset(reach_path(folder, figure))
            descent, flow, stats = results[figure]
            stats["reach"] = reach_statistics(reaches[figure], descent, flow, options.tol)["reach"]
    fails = {
        figure: load_dataset(failing_path(folder, figure))
        for figure in options.figures
        if failing_path(folder, figure).exists()
    }
    data = load_tree(folder / "data.npz")
    scan = json.loads(data["scan"])
    walls = {name: tuple(value) for name, value in json.loads(data["walls"]).items()}
    extra = dict(longs=longs, reaches=reaches, fails=fails)
    return _draw(options, results, data.get("runs", []), scan, walls, extra)
