"""`flowdip demo`: gradient flow against gradient descent at three step sizes on one
compressed-sensing instance with the papers' two-layer DIP.

Files (under `out`): `loss.png`, `gap.png`, `gap_vs_step_size.png`, `summary.png` (the three
side by side), `summary.txt` (the table) and `data.npz` (the curves the figures draw).
"""

import dataclasses
import math
import os
import pathlib
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import jax.random as jr
import matplotlib.pyplot as plt
import numpy as np

from .._analysis.compare import compare, convergence_order, fit_rate
from .._analysis.sharpness import gauss_newton_sharpness
from .._dynamics import GradientDescent, GradientFlow, LossBelow
from .._generator.networks import TwoLayerDIP
from .._losses import MSE
from .._objective import Objective
from .._problem.problem import InverseProblem
from .._solve import solve


@dataclasses.dataclass(frozen=True)
class Options:
    """Every choice of the demo.

    **Arguments:**

    - `n`: signal size.
    - `m`: number of measurements.
    - `k`: hidden width.
    - `d`: input size (irrelevant to the dynamics).
    - `seed`: random seed of the instance and the network.
    - `scaling`: entries of `A`, N(0, 1) for `unit` (as in P1) or N(0, 1/m) for `1/m`.
    - `step_sizes`: the descent step sizes compared with the flow.
    - `t1`: time horizon of every run.
    - `tol`: every run stops once the loss falls below `tol`.
    - `gap_time`: the time at which the gap between descent and flow is measured.
    - `order_step_sizes`: the step sizes over which that gap's log-log slope is fitted.
    - `out`: the output folder.
    """

    n: int = 64
    m: int = 32
    k: int = 2048
    d: int = 16
    seed: int = 0
    scaling: str = dataclasses.field(default="1/m", metadata=dict(choices=("unit", "1/m")))
    step_sizes: Sequence[float] = dataclasses.field(
        default=(1.0, 0.5, 0.25), metadata=dict(positive=True)
    )
    t1: float = 2000.0
    tol: float = 1e-7
    gap_time: float = 20.0
    order_step_sizes: Sequence[float] = dataclasses.field(
        default=(1.0, 0.5, 0.25, 0.125, 0.0625), metadata=dict(positive=True)
    )
    out: str | os.PathLike = pathlib.Path("results/demo")

    def __post_init__(self):
        object.__setattr__(self, "out", pathlib.Path(self.out))
        for name in ("n", "m", "k", "d"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {name}={value!r}.")
        if self.scaling not in ("unit", "1/m"):
            raise ValueError(f"scaling must be 'unit' or '1/m'; got scaling={self.scaling!r}.")
        for name in ("t1", "tol", "gap_time"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number; got {name}={value!r}.")
            object.__setattr__(self, name, float(value))
        for name, least in (("step_sizes", 1), ("order_step_sizes", 2)):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) < least or any(not (math.isfinite(v) and v > 0) for v in value):
                raise ValueError(
                    f"{name} must be at least {least} positive numbers; got {name}={value!r}."
                )
            object.__setattr__(self, name, value)
        if self.gap_time > self.t1:
            raise ValueError(
                f"gap_time must be within the horizon t1={self.t1:g}; got "
                f"gap_time={self.gap_time:g}."
            )

    @classmethod
    def quick(cls, **overrides) -> "Options":
        """A smaller instance (n=20, m=10, k=400, t1=500) that runs in a few seconds."""
        return cls(**{**dict(n=20, m=10, k=400, d=8, t1=500.0), **overrides})


def run(options: Options, log: Callable[[str], None] = print) -> dict[str, pathlib.Path]:
    """Runs the demo, writes the figures, the table and the data under `options.out`.

    **Returns:** the paths written: `loss`, `gap`, `gap_vs_step_size`, `summary` (figures),
    `table` (`summary.txt`) and `data` (`data.npz`).
    """
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    kp, kn = jr.split(jr.key(options.seed))
    problem = InverseProblem.compressed_sensing(kp, options.m, options.n, scaling=options.scaling)
    net = TwoLayerDIP.init(kn, d=options.d, k=options.k, n=options.n)
    objective = Objective(problem, net, MSE())
    sharp = float(gauss_newton_sharpness(objective, objective.initial_state()))
    log(
        f"Instance: n={options.n}, m={options.m}, k={options.k}, d={options.d}, sigmoid, "
        f"A ~ N(0, {'1' if options.scaling == 'unit' else '1/m'}), seed {options.seed}; "
        f"F(θ₀) = {float(objective.value(objective.initial_state())):.4g}, "
        f"Gauss–Newton λ_max(θ₀) = {sharp:.4g} (stable steps η < {2 / sharp:.3g})."
    )
    for eta in sorted(set(options.step_sizes) | set(options.order_step_sizes)):
        if eta >= 2 / sharp:
            log(
                f"Note: η={eta:g} ≥ 2/λ_max(θ₀) ≈ {2 / sharp:.3g}: descent at this step is outside "
                "the stable range, and its O(η) agreement with the flow is not expected."
            )
    stop = LossBelow(options.tol)
    eta_min = min(options.step_sizes)
    # Saves on whole steps of the smallest η: dense early (log-spaced, where the gap grows)
    # and evenly spread later.
    horizon = int(round(options.t1 / eta_min))
    steps = np.concatenate([np.linspace(0, horizon, 300), np.geomspace(1, horizon, 200)])
    ts = np.unique(np.round(steps).astype(np.int64)) * eta_min

    rows, descents = [], []
    total = len(options.step_sizes) + 1
    start = time.perf_counter()
    flow = solve(objective, GradientFlow(), t1=options.t1, ts=ts, stop=stop)
    jax.block_until_ready(flow.loss)
    rows.append(("gradient flow", flow, time.perf_counter() - start))
    log(f"[1/{total}] gradient flow (Tsit5, rtol 1e-8): {rows[-1][2]:.2f} s")
    for i, eta in enumerate(options.step_sizes):
        start = time.perf_counter()
        # Save on the same times as the flow wherever they are whole steps of this η.
        my_ts = ts[np.isclose(np.round(ts / eta) * eta, ts, rtol=0, atol=1e-9)]
        gd = solve(objective, GradientDescent(eta), t1=options.t1, ts=my_ts, stop=stop)
        jax.block_until_ready(gd.loss)
        descents.append(gd)
        rows.append((f"GD η={eta:g}", gd, time.perf_counter() - start))
        log(f"[{i + 2}/{total}] gradient descent η={eta:g}: {rows[-1][2]:.2f} s")

    comparisons = [compare(flow, gd) for gd in descents]
    order = convergence_order(
        objective, step_sizes=list(options.order_step_sizes), t=options.gap_time
    )

    x_norm = float(jnp.linalg.norm(problem.x_true))
    header = (
        f"{'dynamics':<15}{'steps':>8}{'stop time':>11}{'final loss':>12}"
        f"{'‖x−x̄‖/‖x̄‖':>12}{'gap@t=' + format(options.gap_time, 'g'):>11}{'rate':>9}"
        f"{'wall s':>8}  result"
    )
    lines = [header, "-" * len(header)]
    for j, (name, traj, wall) in enumerate(rows):
        if j == 0:
            gap = "-"
        else:
            cmp = comparisons[j - 1]
            at = np.argmin(np.abs(np.asarray(cmp.ts) - options.gap_time))
            gap = f"{float(cmp.param_gap[at]):.3e}"
        rate = float(fit_rate(traj.ts, traj.loss, traj.valid))
        lines.append(
            f"{name:<15}{int(traj.num_steps):>8}{float(traj.stop_time):>11.4g}"
            f"{float(traj.final_loss):>12.3e}"
            f"{float(jnp.linalg.norm(traj.final_signal - problem.x_true)) / x_norm:>12.4f}"
            f"{gap:>11}{rate:>9.4f}{wall:>8.2f}  {traj.message}"
        )
    lines.append("")
    lines.append(
        f"Gap at t={options.gap_time:g} against η over {list(options.order_step_sizes)}: "
        f"fitted log-log slope {float(order.slope):.3f} (explicit Euler: 1)."
    )
    table = "\n".join(lines)
    log("")
    log(table)

    paths = {"data": out / "data.npz"}
    curves = {}
    for j, traj in enumerate([flow, *descents]):
        ok = np.asarray(traj.valid)
        curves[f"curve{j}/label"] = np.asarray(traj.dynamics.label())
        curves[f"curve{j}/ts"] = np.asarray(traj.ts)[ok]
        curves[f"curve{j}/loss"] = np.asarray(traj.loss)[ok]
    for j, cmp in enumerate(comparisons):
        ok = np.asarray(cmp.valid)
        curves[f"gap{j}/step_size"] = np.asarray(cmp.step_size)
        curves[f"gap{j}/ts"] = np.asarray(cmp.ts)[ok]
        curves[f"gap{j}/gap"] = np.asarray(cmp.param_gap)[ok]
    for name in ("step_sizes", "gaps", "slope", "intercept"):
        curves[f"order/{name}"] = np.asarray(getattr(order, name))
    curves["order/t"] = np.asarray(order.t)
    np.savez(paths["data"], **curves)
    paths["table"] = out / "summary.txt"
    paths["table"].write_text(table + "\n")
    return _draw(out) | paths


def redraw(folder: str | pathlib.Path) -> dict[str, pathlib.Path]:
    """Redraws the figures from `data.npz` in `folder`.

    **Returns:** the paths written: `loss`, `gap`, `gap_vs_step_size`, `summary`.
    """
    return _draw(pathlib.Path(folder))


def _series(data, prefix: str) -> list[dict]:
    count = len({key.split("/")[0] for key in data if key.startswith(prefix)})
    return [
        {key.split("/")[1]: data[key] for key in data if key.split("/")[0] == f"{prefix}{j}"}
        for j in range(count)
    ]


def _loss_curves(ax, curves: list[dict]) -> None:
    for curve in curves:
        label, loss = str(curve["label"]), curve["loss"]
        # The flow is the reference: black, dashed and on top, so descents stay visible below.
        style = dict(lw=1.8, ls="--", color="black", zorder=3) if "flow" in label else {}
        ax.semilogy(curve["ts"], np.where(loss > 0, loss, np.nan), label=label, **style)
    _finish(ax, "time t (descent: τ·η)", "loss F(θ(t))", "Loss")


def _gap_over_time(ax, gaps: list[dict]) -> None:
    for gap in gaps:
        t = gap["ts"]
        ax.loglog(t[t > 0], gap["gap"][t > 0], label=f"η={float(gap['step_size']):g}")
    _finish(
        ax,
        "time t = τ·η (log scale)",
        "‖θ_GD(τη) − θ_GF(τη)‖",
        "Descent against flow: parameter gap",
    )


def _gap_vs_step_size(ax, order: dict) -> None:
    eta, gap = order["step_sizes"], order["gaps"]
    slope, intercept = float(order["slope"]), float(order["intercept"])
    ax.loglog(eta, gap, "o", ms=7, label="measured", zorder=3)
    grid = np.geomspace(eta.min() / 1.5, eta.max() * 1.5, 50)
    ax.loglog(grid, np.exp(intercept) * grid**slope, "-", label=f"fit: slope {slope:.3f}")
    ref = gap[np.argmin(eta)] * grid / eta.min()
    ax.loglog(grid, ref, ":", color="gray", label="slope 1 (order of explicit Euler)")
    _finish(
        ax,
        "step size η",
        f"‖θ_GD(t) − θ_GF(t)‖ at t = {float(order['t']):g}",
        "Gap at fixed time against step size",
        which="both",
    )


def _finish(ax, xlabel: str, ylabel: str, title: str, which: str = "major") -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which=which, alpha=0.3)
    ax.legend()


def _draw(out: pathlib.Path) -> dict[str, pathlib.Path]:
    with np.load(out / "data.npz") as data:
        data = dict(data)
    curves, gaps = _series(data, "curve"), _series(data, "gap")
    order = {key.split("/")[1]: value for key, value in data.items() if key.startswith("order/")}
    panels = (
        ("loss", (6.5, 4.2), _loss_curves, curves),
        ("gap", (6.5, 4.2), _gap_over_time, gaps),
        ("gap_vs_step_size", (5.5, 4.2), _gap_vs_step_size, order),
    )
    paths = {}
    for name, size, draw, values in panels:
        fig = plt.figure(figsize=size, layout="constrained")
        draw(fig.gca(), values)
        paths[name] = out / f"{name}.png"
        fig.savefig(paths[name], dpi=130)
        plt.close(fig)
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6), layout="constrained")
    for ax, (_, _, draw, values) in zip(axes, panels):
        draw(ax, values)
    paths["summary"] = out / "summary.png"
    fig.savefig(paths["summary"], dpi=110)
    plt.close(fig)
    return paths
