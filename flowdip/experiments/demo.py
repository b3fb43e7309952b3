"""`flowdip demo`: gradient flow against gradient descent at three step sizes on one
compressed-sensing instance with the papers' two-layer DIP."""

import dataclasses
import pathlib
import time

import jax
import jax.numpy as jnp
import jax.random as jr
import matplotlib.pyplot as plt
import numpy as np

from .. import plot
from .._analysis.compare import compare, convergence_order, fit_rate
from .._dynamics import GradientDescent, GradientFlow, LossBelow
from .._generator.networks import TwoLayerDIP
from .._losses import MSE
from .._objective import Objective
from .._problem.problem import InverseProblem
from .._solve import solve


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo (all exposed on the command line)."""

    n: int = 64
    m: int = 32
    k: int = 2048
    d: int = 16
    seed: int = 0
    scaling: str = "1/m"
    step_sizes: tuple[float, ...] = (1.0, 0.5, 0.25)
    t1: float = 2000.0
    tol: float = 1e-7
    gap_time: float = 20.0
    order_step_sizes: tuple[float, ...] = (1.0, 0.5, 0.25, 0.125, 0.0625)

    @classmethod
    def quick(cls) -> "DemoConfig":
        """A smaller instance that runs in a few seconds (CI, docs)."""
        return cls(n=20, m=10, k=400, d=8, t1=500.0)


def gauss_newton_sharpness(objective: Objective) -> float:
    """`λ_max(J_zᵀ Aᵀ A J_z)` at `θ₀` for the two-layer net: the Gauss–Newton part of the
    Hessian, whose inverse sets the stable step sizes (`η < 2/λ_max`)."""
    g = objective.generator
    M = objective.B * g.activation.derivative(g.z)[None, :]
    return float(jnp.linalg.norm(M, ord=2) ** 2 * jnp.dot(g.u, g.u))


def run(config: DemoConfig, out: pathlib.Path, log=print) -> dict:
    """Runs the demo, writes the figures and the table under `out`, returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    kp, kn = jr.split(jr.key(config.seed))
    problem = InverseProblem.compressed_sensing(kp, config.m, config.n, scaling=config.scaling)
    net = TwoLayerDIP.init(kn, d=config.d, k=config.k, n=config.n)
    objective = Objective(problem, net, MSE())
    sharp = gauss_newton_sharpness(objective)
    log(
        f"Instance: n={config.n}, m={config.m}, k={config.k}, d={config.d}, sigmoid, "
        f"A ~ N(0, {'1' if config.scaling == 'unit' else '1/m'}), seed {config.seed}; "
        f"F(θ₀) = {float(objective.value(objective.initial_state())):.4g}, "
        f"Gauss–Newton λ_max(θ₀) = {sharp:.4g} (stable steps η < {2 / sharp:.3g})."
    )
    for eta in sorted(set(config.step_sizes) | set(config.order_step_sizes)):
        if eta >= 2 / sharp:
            log(
                f"Note: η={eta:g} ≥ 2/λ_max(θ₀) ≈ {2 / sharp:.3g}: descent at this step is outside "
                "the stable range, and its O(η) agreement with the flow is not expected."
            )
    stop = LossBelow(config.tol)
    eta_min = min(config.step_sizes)
    # Saves on whole steps of the smallest η: dense early (log-spaced, where the gap grows)
    # and evenly spread later.
    horizon = int(round(config.t1 / eta_min))
    steps = np.concatenate([np.linspace(0, horizon, 300), np.geomspace(1, horizon, 200)])
    ts = np.unique(np.round(steps).astype(np.int64)) * eta_min

    rows, descents = [], []
    total = len(config.step_sizes) + 1
    start = time.perf_counter()
    flow = solve(objective, GradientFlow(), t1=config.t1, ts=ts, stop=stop)
    jax.block_until_ready(flow.loss)
    rows.append(("gradient flow", flow, time.perf_counter() - start))
    log(f"[1/{total}] gradient flow (Tsit5, rtol 1e-8): {rows[-1][2]:.2f} s")
    for i, eta in enumerate(config.step_sizes):
        start = time.perf_counter()
        # Save on the same times as the flow wherever they are whole steps of this η.
        my_ts = ts[np.isclose(np.round(ts / eta) * eta, ts, rtol=0, atol=1e-9)]
        gd = solve(objective, GradientDescent(eta), t1=config.t1, ts=my_ts, stop=stop)
        jax.block_until_ready(gd.loss)
        descents.append(gd)
        rows.append((f"GD η={eta:g}", gd, time.perf_counter() - start))
        log(f"[{i + 2}/{total}] gradient descent η={eta:g}: {rows[-1][2]:.2f} s")

    comparisons = [compare(flow, gd) for gd in descents]
    order = convergence_order(
        objective, step_sizes=list(config.order_step_sizes), t=config.gap_time
    )

    x_norm = float(jnp.linalg.norm(problem.x_true))
    header = (
        f"{'dynamics':<15}{'steps':>8}{'stop time':>11}{'final loss':>12}"
        f"{'‖x−x̄‖/‖x̄‖':>12}{'gap@t=' + format(config.gap_time, 'g'):>11}{'rate':>9}"
        f"{'wall s':>8}  result"
    )
    lines = [header, "-" * len(header)]
    for j, (name, traj, wall) in enumerate(rows):
        if j == 0:
            gap = "-"
        else:
            cmp = comparisons[j - 1]
            at = np.argmin(np.abs(np.asarray(cmp.ts) - config.gap_time))
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
        f"Gap at t={config.gap_time:g} against η over {list(config.order_step_sizes)}: "
        f"fitted log-log slope {float(order.slope):.3f} (explicit Euler: 1)."
    )
    table = "\n".join(lines)
    log("")
    log(table)

    paths = {}
    fig = plt.figure(figsize=(6.5, 4.2), layout="constrained")
    plot.loss_curves([flow, *descents], ax=fig.gca())
    paths["loss"] = out / "loss.png"
    fig.savefig(paths["loss"], dpi=130)
    fig = plt.figure(figsize=(6.5, 4.2), layout="constrained")
    plot.gap_over_time(comparisons, ax=fig.gca())
    paths["gap"] = out / "gap.png"
    fig.savefig(paths["gap"], dpi=130)
    fig = plt.figure(figsize=(5.5, 4.2), layout="constrained")
    plot.gap_vs_step_size(order, ax=fig.gca())
    paths["gap_vs_step_size"] = out / "gap_vs_step_size.png"
    fig.savefig(paths["gap_vs_step_size"], dpi=130)
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6), layout="constrained")
    plot.loss_curves([flow, *descents], ax=axes[0])
    plot.gap_over_time(comparisons, ax=axes[1])
    plot.gap_vs_step_size(order, ax=axes[2])
    paths["summary"] = out / "summary.png"
    fig.savefig(paths["summary"], dpi=110)
    plt.close("all")
    paths["table"] = out / "summary.txt"
    paths["table"].write_text(table + "\n")
    return {
        "paths": paths,
        "slope": float(order.slope),
        "order": order,
        "flow": flow,
        "descents": descents,
        "comparisons": comparisons,
    }
