"""The figures and the summary of `flowdip reproduce flow-vs-descent-phase`: the phase
diagrams, the runs of chosen cells, the step-size scan."""

import json
import pathlib

import matplotlib.lines
import matplotlib.patches
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np

from .. import plot
from ._p1 import FIGURES


def squeeze(stats: dict, figure: str) -> tuple[dict, str]:
    """2-d tables `(y, k)` of a grid where one of `n`, `m` is fixed."""
    y, _ = FIGURES[figure]
    axis = 1 if y == "n" else 0  # drop the fixed one of (n, m)
    out = {}
    for name, value in stats.items():
        out[name] = np.take(value, 0, axis=axis) if isinstance(value, np.ndarray) else value
    return out, y


def runs_figure(runs: list[dict], path: pathlib.Path) -> tuple[pathlib.Path, list[str]]:
    """One row per cell: the loss of the descent and of the flow from the same initialisation,
    `η·λ_max` along the descent, and the parameter gap `‖θ_GD(τη) − θ(τη)‖` (the data of
    `run_cells`). **Returns:** the path and one line of notes per cell."""
    rows = max(len(runs), 1)
    fig, axes = plt.subplots(rows, 3, figsize=(15, 3.6 * rows), layout="constrained", squeeze=False)
    notes = []
    for row, run in enumerate(runs):
        figure, n, m, k, s, eta = (run[key] for key in ("figure", "n", "m", "k", "seed", "eta"))
        a, b, c = axes[row]
        for name, label, style in (
            ("gd", f"GD η={eta:g}", {}),
            ("gf", "gradient flow", dict(color="black", ls="--")),
        ):
            # t = 0 is drawn at η/200 on the log axis.
            a.loglog(
                np.maximum(run[f"{name}_ts"], eta / 200), run[f"{name}_loss"], label=label, **style
            )
        a.axhline(run["tol"], color="gray", lw=0.8, ls=":")
        a.set_ylabel("loss F(θ)")

        def outcome(name):
            stop = run[f"{name}_stop_time"]
            return (
                f"converged at t = {stop:.3g}"
                if run[f"{name}_converged"]
                else (f"not converged (stopped at t = {stop:.3g})")
            )

        a.set_title(
            f"{figure}, n={n} m={m} k={k}, seed {s}\nGD {outcome('gd')}; flow {outcome('gf')}",
            fontsize="small",
        )
        sharp = run["sharpness"]
        b.semilogx(np.maximum(run["gd_ts"], eta / 2), sharp, label="η·λ_max(∇²F(θ_τ))")
        b.axhline(2.0, color="red", lw=1, ls="--", label="2 (stability edge)")
        b.set_ylabel("η·λ_max")
        gap_t, gap = np.asarray(run["gap_ts"]), np.asarray(run["gap"])
        c.semilogx(gap_t, gap, "o-", ms=3)
        c.set_ylabel("‖θ_GD(τη) − θ(τη)‖")
        if gap.size == 0:
            c.text(
                0.5,
                0.5,
                f"the flow {'converged' if run['gf_converged'] else 'stopped'} at "
                f"t = {run['gf_stop_time']:.3g},\n"
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
        notes.append(
            f"{figure} n={n} m={m} k={k} seed {s}: GD converged={run['gd_converged']} "
            f"(t={run['gd_stop_time']:g}, loss rose: {run['gd_loss_rose']}), flow "
            f"converged={run['gf_converged']} (t={run['gf_stop_time']:.4g}); η·λ_max at θ₀ "
            f"{sharp[0]:.3g}, max along GD {np.nanmax(sharp):.3g}; "
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


def table(name: str, values: np.ndarray, ys, ks, y: str, fmt: str) -> list[str]:
    lines = [f"{name} (rows: {y}, columns: k)", f"{y:>6} |" + "".join(f"{int(k):>7}" for k in ks)]
    for j, yv in enumerate(ys):
        lines.append(f"{int(yv):>6} |" + "".join(format(v, fmt) for v in values[j]))
    return lines + [""]


def summary_text(results: dict, options, notes, scan, walls) -> str:
    """The text of `summary.txt`: per grid the tables of both diagrams and their comparison,
    the runs figure's notes, the scan and the timings."""
    lines = [
        f"flow vs descent phase diagrams; η = {options.step_size:g}, tol {options.tol:g}",
        "",
    ]
    for figure, (descent, flow, stats) in results.items():
        d2, y = squeeze(stats, figure)
        ks, ys = descent["k"].values, descent[y].values
        config = json.loads(flow.attrs["config"])
        lines.append(
            f"== {figure}: {len(ys)} {y} × {len(ks)} k cells, {stats['seeds']} seeds; "
            f"descent cap {json.loads(descent.attrs['config'])['horizon']}, flow horizon "
            f"{config['horizon']:g}, flow {config['dynamics']}"
        )
        lines += table("descent success", d2["descent"], ys, ks, y, "7.2f")
        lines += table("flow success", d2["flow"], ys, ks, y, "7.2f")
        lines += table("descent − flow", d2["difference"], ys, ks, y, "7.2f")
        lines += table("runs with different outcomes", d2["mismatch"], ys, ks, y, "7.2f")
        lines += table("median η·λ_max(θ₀)", d2["eta_lambda"], ys, ks, y, "7.3g")
        # A reused descent sweep run without diagnostics has no loss-rise flags.
        rose_known = not np.isnan(d2["rose"]).all()
        if rose_known:
            lines += table("fraction of descents whose loss rose", d2["rose"], ys, ks, y, "7.2f")
        lines += table("flow runs ended on the budget", d2["flow_budget"], ys, ks, y, "7.2f")
        el, mm = d2["eta_lambda"], d2["mismatch"]
        for label, region in (("η·λ_max < 2", el < 2), ("η·λ_max ≥ 2", el >= 2)):
            if region.any():
                lines.append(
                    f"{label}: {int(region.sum())} cells; runs with different outcomes "
                    f"{100 * mm[region].mean():.1f}%; cells with |descent − flow| > 0.1: "
                    f"{int((np.abs(d2['difference'][region]) > 0.1).sum())}; "
                    + (
                        f"descent loss rose in {100 * np.nanmean(d2['rose'][region]):.1f}% of runs"
                        if rose_known
                        else "descent loss rises not recorded (descent sweep without diagnostics)"
                    )
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


# -- figures ------------------------------------------------------------------------------------
def log_axes(ax):
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(matplotlib.ticker.LogFormatter())
        axis.set_minor_formatter(matplotlib.ticker.LogFormatter(labelOnlyBase=False))


def phase_figure(results: dict, options, path: pathlib.Path) -> pathlib.Path:
    """Descent (with the sharpness contour and the loss-rise hatching), flow, and their
    difference, one row per grid."""
    rows = len(results)
    fig, axes = plt.subplots(rows, 3, figsize=(17, 4.9 * rows), layout="constrained", squeeze=False)
    eta = options.step_size
    for row, (figure, (descent, flow, stats)) in enumerate(results.items()):
        y, law = FIGURES[figure]
        seeds = stats["seeds"]
        d2, _ = squeeze(stats, figure)
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
            xe, ye = plot.cell_edges(ks), plot.cell_edges(ys)
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
        reach_line = None
        if "reach" in d2 and np.nanmin(d2["reach"]) < 0.5 < np.nanmax(d2["reach"]):
            reach_line = matplotlib.lines.Line2D(
                [], [], color="darkorange", lw=2.5, ls=":", label="P(y reachable) = 50%"
            )
            handles.append(reach_line)
            a.contour(ks, ys, d2["reach"], levels=[0.5], colors="darkorange", linewidths=2.5,
                      linestyles=":")  # fmt: skip
        if handles:
            legend = a.legend(handles=handles, loc="lower right", fontsize="small", framealpha=0.8)
            legend.get_frame().set_facecolor("0.85")
        plot.phase_diagram(flow.isel(seed=slice(0, seeds)), x="k", y=y, ax=b, theory=law)
        if reach_line is not None:
            b.contour(ks, ys, d2["reach"], levels=[0.5], colors="darkorange", linewidths=2.5,
                      linestyles=":")  # fmt: skip
            flow_handles = list(b.get_legend().legend_handles) if b.get_legend() else []
            b.legend(handles=flow_handles + [reach_line], loc="lower right", fontsize="small")
        budget = float(np.mean(d2["flow_budget"]))
        b.set_title(
            f"{figure}: gradient flow, horizon {json.loads(flow.attrs['config'])['horizon']:g}"
            f"\n(ended on the step budget: {100 * budget:.1f}% of runs)"
        )
        log_axes(c)
        mesh = c.pcolormesh(
            plot.cell_edges(ks),
            plot.cell_edges(ys),
            d2["difference"],
            cmap="RdBu_r",
            vmin=-1,
            vmax=1,
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
        c.set_xlabel(plot.AXIS_LABELS["k"])
        c.set_ylabel(plot.AXIS_LABELS[y])
        c.set_title(f"{figure}: where they disagree\n(numbers: % of runs with different outcomes)")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
