"""What the failing descents do: every descent run of a grid that did not converge by the cap,
run again on its own keys to `cap_factor` times the cap, with its state at the cap measured
(saturated units, the sharpness) and its loss over the last steps before the cap."""

import pathlib

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._analysis.sharpness import sharpness
from .._dynamics import GradientDescent, LossBelow
from .._solve import RESULTS, solve_descent
from .._sweep import Instance, load_dataset, run_key, save_dataset
from ._p1 import FIGURES
from ._phase_figures import table


#: A unit is saturated when its pre-activation `|z|` exceeds this (σ'(10) ≈ 4.5e-5).
SATURATED = 10.0
#: Runs per compiled batch (the last batch of a width bucket is padded by repeating a run).
_BATCH = 64
#: The loss "still falls" over the last window when it drops by more than this fraction.
_FALLING = 1e-3


def _bucket(k: int) -> int:
    return 1 << max(6, int(np.ceil(np.log2(k))))


@eqx.filter_jit
def _batch(keys, n_true, k_true, *, scaling, n, m, k, d, eta, tol, cap, window, factor):
    def one(key, nt, kt):
        obj = Instance(scaling=scaling).objective(key, n=n, m=m, k=k, d=d, n_true=nt, k_true=kt)
        dyn = GradientDescent(eta)
        saves = jnp.asarray([cap - window, cap], jnp.int32)
        traj = solve_descent(
            obj,
            dyn,
            save_steps=saves,
            horizon=jnp.asarray(factor * cap, jnp.int32),
            stop=LossBelow(tol),
            save_params=True,
        )
        z = obj.generator.z + traj.params[1] * jnp.sqrt(obj.u_norm2)
        units = jnp.arange(k) < kt
        sat = jnp.sum((jnp.abs(z) > SATURATED) & units) / kt
        lam = sharpness(obj, z).value
        return dict(
            loss_before=traj.loss[0],
            loss_cap=traj.loss[1],
            saturated=sat,
            lam_cap=lam,
            converged_long=traj.result == RESULTS.converged,
            steps_long=traj.num_steps,
        )

    return jax.vmap(one)(keys, n_true, k_true)


def failing_path(out: pathlib.Path, figure: str) -> pathlib.Path:
    """Where the measurements of a grid's failing descents are kept."""
    return out / figure / "failing.nc"


def run_failing(options, figure: str, descent, log=print, factor: int = 4, window: int = 5000):
    """Measures every failing descent of `descent` (a P1 descent sweep of `figure`), kept in
    `<figure>/failing.nc`; see the module docstring. Returns the dataset (dims `run`)."""
    import xarray as xr

    path = failing_path(options.out, figure)
    if path.exists():
        return load_dataset(path)
    opts = options.ssvm(figure)
    cap, eta = int(opts.max_steps), float(opts.step_size)
    window = min(window, cap // 2)
    conv = descent["converged"].values.astype(bool)
    idx = np.argwhere(~conv)
    n_v, m_v, k_v = (descent[d].values for d in ("n", "m", "k"))
    runs = [(int(n_v[i]), int(m_v[j]), int(k_v[c]), int(s)) for i, j, c, s in idx]
    log(f"  failing descents: {len(runs)} runs, again to {factor}× the cap → {path}")
    n_pad = int(max(n_v))
    out = []
    for kb in sorted({_bucket(k) for _, _, k, _ in runs}):
        group = [r for r in runs if _bucket(r[2]) == kb]
        for m in sorted({r[1] for r in group}):
            sub = [r for r in group if r[1] == m]
            for start in range(0, len(sub), _BATCH):
                part = sub[start : start + _BATCH]
                padded = part + [part[-1]] * (_BATCH - len(part))
                keys = jnp.stack([run_key(opts.seed, n, mm, s) for n, mm, _, s in padded])
                res = _batch(
                    keys,
                    jnp.asarray([r[0] for r in padded]),
                    jnp.asarray([r[2] for r in padded]),
                    scaling=opts.scaling, n=n_pad, m=m, k=kb, d=opts.d, eta=eta,
                    tol=opts.tol, cap=cap, window=window, factor=factor,
                )  # fmt: skip
                res = {name: np.asarray(v)[: len(part)] for name, v in res.items()}
                out += [dict(zip(("n", "m", "k", "seed"), r)) | {
                    name: v[i] for name, v in res.items()} for i, r in enumerate(part)]  # fmt: skip
    names = [name for name in (out[0] if out else {})]
    data = {name: ("run", np.asarray([row[name] for row in out])) for name in names}
    ds = xr.Dataset(data, attrs=dict(cap=cap, factor=factor, window=window, step_size=eta))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.nc")
    save_dataset(ds, tmp)
    tmp.replace(path)
    return load_dataset(path)


def failing_summary(fails: dict) -> list[str]:
    """The summary's lines on the failing descents, per grid."""
    lines = []
    for figure, ds in fails.items():
        if ds.sizes.get("run", 0) == 0:
            continue
        cap, factor, window = (int(ds.attrs[a]) for a in ("cap", "factor", "window"))
        eta = float(ds.attrs["step_size"])
        el = eta * ds["lam_cap"].values
        falling = ds["loss_cap"].values < (1 - _FALLING) * ds["loss_before"].values
        conv = ds["converged_long"].values.astype(bool)
        sat = ds["saturated"].values
        # A re-run converging before the cap never reaches its saves (NaN): the batch it runs
        # in rounds differently, which an unstable descent amplifies.
        early = conv & (ds["steps_long"].values < cap)
        el, sat, falling = el[~early], sat[~early], falling[~early]
        conv_late = conv[~early]
        lines += [
            "",
            f"{figure}: the {ds.sizes['run']} descents that fail by the cap of {cap} steps"
            + (
                f" ({early.sum()} of them converged before the cap when run again in another "
                "batch, whose round-off differs; left out below)"
                if early.any()
                else ""
            ),
            f"  saturated units (|z| > {SATURATED:g}) at the cap: median "
            f"{100 * np.median(sat):.1f}%, runs with more than half saturated "
            f"{100 * np.mean(sat > 0.5):.1f}%",
            f"  η·λ_max at the cap: median {np.median(el):.3g}, between 1.9 and 2.1 in "
            f"{100 * np.mean((el > 1.9) & (el < 2.1)):.1f}% of runs, above 2.1 in "
            f"{100 * np.mean(el >= 2.1):.1f}%, below 1.9 in {100 * np.mean(el <= 1.9):.1f}%",
            f"  loss still falling over the last {window} steps (by > {100 * _FALLING:g}%): "
            f"{100 * np.mean(falling):.1f}% of runs",
            f"  converged with the cap raised {factor}×: {100 * np.mean(conv_late):.1f}% of runs "
            f"({100 * np.mean(conv_late[falling]) if falling.any() else 0:.1f}% of those still "
            f"falling, {100 * np.mean(conv_late[~falling]) if (~falling).any() else 0:.1f}% of "
            "the others)",
        ]
        y = FIGURES[figure][0]
        ys = sorted({int(v) for v in ds[y].values})
        ks = sorted({int(v) for v in ds["k"].values})
        grid = np.full((len(ys), len(ks)), np.nan)
        yv_, kv_ = ds[y].values[~early], ds["k"].values[~early]
        for j, yv in enumerate(ys):
            for i, kv in enumerate(ks):
                sel = (yv_ == yv) & (kv_ == kv)
                if sel.any():
                    grid[j, i] = np.median(el[sel])
        lines += table("median η·λ_max at the cap of the failing runs", grid, ys, ks, y, "7.2g")
    return lines
