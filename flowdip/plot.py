"""Matplotlib figures of results (trajectories, comparisons, convergence orders).

Plots are functions of results, never of live runs. Each takes an optional `ax` and returns
the axes (or the figure, for multi-panel plots).
"""

from collections.abc import Sequence

import matplotlib


matplotlib.use(matplotlib.get_backend() or "Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ._compare import Comparison, ConvergenceOrder  # noqa: E402
from ._dynamics import AbstractDiscreteDynamics  # noqa: E402
from ._trajectory import Trajectory  # noqa: E402


def label_of(traj: Trajectory) -> str:
    """A short label: `gradient flow` or `GD η=…`."""
    dyn = traj.dynamics
    if isinstance(dyn, AbstractDiscreteDynamics):
        return f"{type(dyn).__name__.replace('GradientDescent', 'GD')} η={float(dyn.step_size):g}"
    return type(dyn).__name__.replace("GradientFlow", "gradient flow")


def _valid(traj: Trajectory, values) -> tuple[np.ndarray, np.ndarray]:
    ok = np.asarray(traj.valid)
    return np.asarray(traj.ts)[ok], np.asarray(values)[ok]


def loss_curves(trajectories: Sequence[Trajectory], labels: Sequence[str] | None = None, ax=None):
    """Loss against time on a log scale, one line per trajectory (descent at `t = τη`)."""
    ax = ax or plt.figure(figsize=(6, 4)).gca()
    labels = labels or [label_of(t) for t in trajectories]
    for traj, label in zip(trajectories, labels):
        t, loss = _valid(traj, traj.loss)
        # The flow is the reference: black, dashed and on top, so descents stay visible below.
        style = dict(lw=1.8, ls="--", color="black", zorder=3) if "flow" in label else {}
        ax.semilogy(t, np.where(loss > 0, loss, np.nan), label=label, **style)
    ax.set_xlabel("time t (descent: τ·η)")
    ax.set_ylabel("loss F(θ(t))")
    ax.set_title("Loss")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend()
    return ax


def gap_over_time(comparisons: Sequence[Comparison], labels: Sequence[str] | None = None, ax=None):
    """The parameter gap `‖θ_GD(τη) − θ_GF(τη)‖` against time, one line per step size."""
    ax = ax or plt.figure(figsize=(6, 4)).gca()
    for i, cmp in enumerate(comparisons):
        ok = np.asarray(cmp.valid)
        t, gap = np.asarray(cmp.ts)[ok], np.asarray(cmp.param_gap)[ok]
        label = labels[i] if labels else f"η={float(cmp.step_size):g}"
        ax.loglog(t[t > 0], gap[t > 0], label=label)
    ax.set_xlabel("time t = τ·η (log scale)")
    ax.set_ylabel("‖θ_GD(τη) − θ_GF(τη)‖")
    ax.set_title("Descent against flow: parameter gap")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend()
    return ax


def gap_vs_step_size(order: ConvergenceOrder, ax=None):
    """The gap at a fixed time against `η` on log-log axes, with the fitted slope and a
    slope-1 reference line."""
    ax = ax or plt.figure(figsize=(5, 4)).gca()
    eta, gap = np.asarray(order.step_sizes), np.asarray(order.gaps)
    slope, intercept = float(order.slope), float(order.intercept)
    ax.loglog(eta, gap, "o", ms=7, label="measured", zorder=3)
    grid = np.geomspace(eta.min() / 1.5, eta.max() * 1.5, 50)
    ax.loglog(grid, np.exp(intercept) * grid**slope, "-", label=f"fit: slope {slope:.3f}")
    ref = gap[np.argmin(eta)] * grid / eta.min()
    ax.loglog(grid, ref, ":", color="gray", label="slope 1 (order of explicit Euler)")
    ax.set_xlabel("step size η")
    ax.set_ylabel(f"‖θ_GD(t) − θ_GF(t)‖ at t = {order.t:g}")
    ax.set_title("Gap at fixed time against step size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return ax


def trajectories(comparison: Comparison):
    """Two panels for one comparison: both losses, and the parameter gap over time."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    loss_curves([comparison.flow, comparison.descent], ax=a)
    gap_over_time([comparison], ax=b)
    return fig
