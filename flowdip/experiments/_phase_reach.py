"""Reachability on the phase diagrams: whether `y` lies in the set of measurements the network
can produce (docs/theory.md §5.3), per run, against what descent and the flow did."""

import pathlib

from .._sweep import Grid, Instance, load_dataset, save_dataset, sweep_reachability
from ._p1 import FIGURES
from ._phase_figures import squeeze, table


def reach_path(out: pathlib.Path, figure: str) -> pathlib.Path:
    """Where the reachability of a grid's runs is kept."""
    return out / figure / "reach.nc"


def run_reach(options, figure: str, log=print):
    """The reachability of the first `options.reach_seeds` runs of every cell (a linear
    program per run, on the host), computed once and kept in `<figure>/reach.nc`."""
    opts = options.ssvm(figure)
    seeds = min(options.reach_seeds, opts.seeds)
    g = opts.grid
    grid = Grid(n=g.n, m=g.m, k=g.k, seeds=seeds, d=g.d)
    path = reach_path(options.out, figure)
    if path.exists():
        ds = load_dataset(path)
        same = all(list(ds[d].values) == list(getattr(grid, d)) for d in ("n", "m", "k"))
        kept = (int(ds.attrs.get("seed", -1)), ds.attrs.get("scaling"))
        if same and ds.sizes["seed"] == seeds and kept == (opts.seed, opts.scaling):
            return ds
    log(f"  reachability of {grid.num_runs} runs ({seeds} per cell) → {path}")
    instance = Instance(scaling=opts.scaling)
    ds = sweep_reachability(grid, instance=instance, seed=opts.seed, progress=options.progress)
    ds.attrs["seed"] = opts.seed
    ds.attrs["scaling"] = opts.scaling
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.nc")
    save_dataset(ds, tmp)
    tmp.replace(path)  # atomic: a killed run leaves no half-written file
    return ds


def reach_statistics(reach, descent, flow, tol: float) -> dict:
    """Per cell, over the seeds with a reachability: `reach` (the fraction of runs whose `y`
    is reachable), `flow_agree` and `descent_agree` (the fraction whose outcome equals
    "`y` is reachable"), `certified` (the fraction certified to fail: loss bound ≥ `tol`) and
    `violations` (certified runs that converged anyway: zero unless something is wrong)."""
    seeds = reach.sizes["seed"]
    reachable = reach["reach_margin"].values > 0
    certified = reach["reach_loss_bound"].values >= tol
    out = dict(reach=reachable.mean(-1), certified=certified.mean(-1), seeds=seeds)
    for name, ds in (("flow", flow), ("descent", descent)):
        ok = ds["converged"].isel(seed=slice(0, seeds)).values.astype(bool)
        out[f"{name}_agree"] = (ok == reachable).mean(-1)
        out[f"{name}_violations"] = (ok & certified).sum(-1)
    return out


def reach_summary(results: dict, reaches: dict, tol: float) -> list[str]:
    """The summary's lines on reachability, per grid."""
    lines = []
    for figure, reach in reaches.items():
        descent, flow, _ = results[figure]
        r = reach_statistics(reach, descent, flow, tol)
        y = FIGURES[figure][0]
        d2, _ = squeeze(r, figure)
        ks, ys = reach["k"].values, reach[y].values
        total = r["reach"].size * r["seeds"]
        lines += [
            "",
            f"{figure}: reachability of y (first {r['seeds']} runs per cell, {total} runs)",
            f"  y reachable in {100 * r['reach'].mean():.1f}% of runs; certified to fail "
            f"(½ dist(y, Z)² ≥ tol) in {100 * r['certified'].mean():.1f}%",
            f"  outcome = reachability: flow {100 * r['flow_agree'].mean():.1f}% of runs, "
            f"descent {100 * r['descent_agree'].mean():.1f}%",
            f"  certified failures that converged (must be 0): flow "
            f"{int(r['flow_violations'].sum())}, descent {int(r['descent_violations'].sum())}",
            *table("P(y reachable)", d2["reach"], ys, ks, y, "7.2f"),
            *table("flow outcome = reachability", d2["flow_agree"], ys, ks, y, "7.2f"),
        ]
    return lines
