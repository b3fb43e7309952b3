"""The flow to a long horizon: which cells of the flow's phase diagram change when the flow
runs to `long_horizon` instead of `max_steps · η` (has not converged yet, or never will)."""

import json
import pathlib

import matplotlib.pyplot as plt
import numpy as np

from .. import plot
from .._sweep import result_codes
from ._p1 import FIGURES
from ._phase_figures import log_axes, squeeze, table


def horizon(ds) -> float:
    """The horizon a flow sweep ran to."""
    return float(json.loads(ds.attrs["config"])["horizon"])


def horizon_statistics(flow, flow_long, seeds: int) -> dict:
    """Per cell: the flow's success frequency at both horizons, the runs that converge only
    with the long one, and, at the long horizon, the runs that reach it without converging
    and those that end on the step budget."""
    short = flow["converged"].isel(seed=slice(0, seeds)).values.astype(bool)
    f = flow_long.isel(seed=slice(0, seeds))
    long = f["converged"].values.astype(bool)
    ended = f["result"].values == result_codes()["max_steps_reached"]
    budget = ended & (f["stop_time"].values < 0.999 * horizon(flow_long))
    return dict(
        short=short.mean(-1),
        long=long.mean(-1),
        gained=(long & ~short).mean(-1),
        lost=(short & ~long).mean(-1),
        at_horizon=(ended & ~budget).mean(-1),
        budget=budget.mean(-1),
        seeds=seeds,
    )


def horizon_figure(results: dict, longs: dict, path: pathlib.Path) -> pathlib.Path:
    """Per grid: the flow's phase diagram at the standard and at the long horizon, and the
    share of runs that converge only with the long one."""
    rows = len(longs)
    fig, axes = plt.subplots(rows, 3, figsize=(17, 4.9 * rows), layout="constrained", squeeze=False)
    for row, (figure, flow_long) in enumerate(longs.items()):
        _, flow, stats = results[figure]
        y, law = FIGURES[figure]
        seeds = min(stats["seeds"], flow_long.sizes["seed"])
        h = horizon_statistics(flow, flow_long, seeds)
        d2, _ = squeeze(h, figure)
        ks, ys = flow["k"].values, flow[y].values
        a, b, c = axes[row]
        plot.phase_diagram(flow.isel(seed=slice(0, seeds)), x="k", y=y, ax=a, theory=law)
        a.set_title(f"{figure}: gradient flow to t = {horizon(flow):g} ({seeds} runs per cell)")
        plot.phase_diagram(flow_long.isel(seed=slice(0, seeds)), x="k", y=y, ax=b, theory=law)
        b.set_title(
            f"{figure}: gradient flow to t = {horizon(flow_long):g}\n(ended on the step budget: "
            f"{100 * float(np.mean(h['budget'])):.1f}% of runs)"
        )
        log_axes(c)
        mesh = c.pcolormesh(
            plot.cell_edges(ks), plot.cell_edges(ys), d2["gained"], cmap="Greens", vmin=0, vmax=1
        )
        for jj, yy in enumerate(ys):
            for ii, kk in enumerate(ks):
                value = d2["gained"][jj, ii]
                if value > 0:
                    c.text(kk, yy, f"{100 * value:.0f}", ha="center", va="center", fontsize=7)
        fig.colorbar(mesh, ax=c, label="fraction of runs")
        c.set_xlabel(plot.AXIS_LABELS.get("k", "k"))
        c.set_ylabel(plot.AXIS_LABELS.get(y, y))
        c.set_title(
            f"{figure}: converge only with the long horizon\n"
            f"({100 * float(np.mean(h['gained'])):.1f}% of runs; in % per cell)"
        )
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def horizon_summary(results: dict, longs: dict) -> list[str]:
    """The summary's lines on the long horizon, per grid."""
    lines = []
    for figure, flow_long in longs.items():
        _, flow, stats = results[figure]
        seeds = min(stats["seeds"], flow_long.sizes["seed"])
        h = horizon_statistics(flow, flow_long, seeds)
        y = FIGURES[figure][0]
        d2, _ = squeeze(h, figure)
        ks, ys = flow["k"].values, flow[y].values
        lines += [
            "",
            f"{figure}: the flow to t = {horizon(flow):g} against t = {horizon(flow_long):g} "
            f"(first {seeds} runs per cell)",
            f"  success: {100 * h['short'].mean():.1f}% → {100 * h['long'].mean():.1f}% of runs; "
            f"{100 * h['gained'].mean():.2f}% converge only with the long horizon, "
            f"{100 * h['lost'].mean():.2f}% only with the short one",
            f"  at t = {horizon(flow_long):g} without converging: "
            f"{100 * h['at_horizon'].mean():.1f}% of runs; on the step budget: "
            f"{100 * h['budget'].mean():.2f}%",
            "  converge only with the long horizon (% of runs per cell):",
            *table("gained", 100 * d2["gained"], ys, ks, y, "7.0f"),
        ]
    return lines
