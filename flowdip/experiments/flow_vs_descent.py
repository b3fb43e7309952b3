"""`flowdip reproduce flow-vs-descent`: flow against descent beyond the papers.

Four figures on one instance of the P1 protocol (two-layer DIP, sigmoid, Rademacher `V`,
Gaussian `A` with N(0, 1) entries, `x̄` Gaussian, MSE):

1. `order.png`: the gap `‖θ_GD(t) − θ(t)‖` at a fixed time over step sizes, to the gradient
   flow (slope 1) and to the modified flow `θ' = −∇(F + (η/4)‖∇F‖²)` (slope 2).
2. `sharpness.png`: descent at step sizes below and above `2/λ_max(θ₀)`: the normalised
   sharpness `η·λ_max` along each run, the loss, and the gap to the gradient flow.
3. `inertial.png`: the inertial flow (P4, THEORY.md §5) for several `(α, β)` against the
   gradient flow, with the explicit inertial algorithm on top.
4. `baselines.png`: gradient flow, gradient descent, Gauss–Newton, Levenberg–Marquardt and
   BFGS (Optimistix) on one axis of iterations.

`summary.txt` lists the numbers quoted by the docs page (`docs/flow-vs-descent.md`).
"""

import dataclasses
import pathlib
import time

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import matplotlib.pyplot as plt
import numpy as np

from .._analysis.compare import convergence_order, ConvergenceOrder, loglog_slope
from .._analysis.sharpness import sharpness, sharpness_along
from .._dynamics import (
    GradientDescent,
    GradientFlow,
    InertialDescent,
    InertialFlow,
    LossBelow,
    ModifiedFlow,
)
from .._dynamics.baselines import OptimistixBaseline
from .._generator.networks import TwoLayerDIP
from .._objective import Objective
from .._problem.problem import InverseProblem
from .._solve import solve, Trajectory


@dataclasses.dataclass(frozen=True)
class FlowVsDescentOptions:
    """Every choice of the experiment.

    **Arguments:** `n`, `m`, `k` (sizes), `seed`; `order_t` and `order_steps` (the time and the
    step sizes of the order study); `factors` (descent step sizes as multiples of
    `2/λ_max(θ₀)`); `eos_steps` (descent steps per run); `alphas`, `betas` (inertial
    parameters); `inertial_t1`, `inertial_h` (horizon and step of the inertial algorithm);
    `baseline_iters`; `tol` (loss floor at which runs stop); `out`.
    """

    n: int = 20
    m: int = 10
    k: int = 200
    seed: int = 0
    order_t: float = 2.0
    order_steps: tuple[float, ...] = (0.25, 0.125, 0.0625, 0.03125, 0.015625)
    factors: tuple[float, ...] = (0.5, 1.1, 1.5, 2.5, 8.0)
    eos_steps: int = 300
    alphas: tuple[float, ...] = (0.5, 2.0, 6.0)
    betas: tuple[float, ...] = (0.0, 1.0)
    inertial_t1: float = 60.0
    inertial_h: float = 0.05
    baseline_iters: int = 300
    tol: float = 1e-12
    out: pathlib.Path = pathlib.Path("results/flow-vs-descent")

    @classmethod
    def quick(cls, **overrides) -> "FlowVsDescentOptions":
        """A smaller instance and fewer runs (under a minute, most of it compilation).

        `baseline_iters` equals `eos_steps` so that the descent runs of the sharpness and
        baseline studies have the same shapes and share one compiled solve.
        """
        base = dict(
            k=60,
            order_steps=(0.25, 0.125, 0.0625),
            factors=(0.5, 2.5),
            eos_steps=100,
            alphas=(0.5, 4.0),
            betas=(0.0, 1.0),
            inertial_t1=30.0,
            inertial_h=0.1,
            baseline_iters=100,
            out=pathlib.Path("results/flow-vs-descent-quick"),
        )
        return cls(**(base | overrides))


def objective(options: FlowVsDescentOptions) -> Objective:
    """The instance: P1's protocol (unit-variance `A`, Gaussian `x̄`, sigmoid, Rademacher `V`)."""
    kp, kn = jr.split(jr.key(options.seed))
    problem = InverseProblem.compressed_sensing(kp, options.m, options.n, scaling="unit")
    net = TwoLayerDIP.init(kn, d=10, k=options.k, n=options.n)
    return Objective(problem, net)


def _say(message: str) -> None:
    print(message, flush=True)


def _positive(x):
    x = np.asarray(x, float)
    return np.where(x > 0, x, np.nan)


@dataclasses.dataclass(frozen=True)
class Shared:
    """What the studies have in common, computed once by `shared`: `lambda0`
    (`λ_max(∇²F(θ₀))`) and `flow`, the reference gradient flow (Dopri8 at 1e-12, stopped at
    `F < tol`) saved on the union of the time grids the studies use, so that it is compiled
    and solved once. `flow_on(times)` gives its rows at those times."""

    lambda0: float
    flow: Trajectory

    def flow_on(self, times) -> Trajectory:
        """The shared flow restricted to the save times `times` (each one of its grid's)."""
        flow_ts = np.asarray(self.flow.ts)
        idx = np.searchsorted(flow_ts, np.asarray(times, float))
        idx = idx.clip(0, flow_ts.size - 1)
        if not np.array_equal(flow_ts[idx], np.asarray(times, float)):
            raise ValueError("times must be save times of the shared flow.")
        return self.flow.at_saves(idx)


def _sharpness_grid(options: FlowVsDescentOptions, lam0: float):
    """Descent step sizes of the sharpness study, its horizon, and the flow's save times (a
    fine grid plus every descent save time, so that gaps are taken at equal times)."""
    etas = [f * 2 / lam0 for f in options.factors]
    t_end = max(etas) * options.eos_steps
    fine = np.union1d(
        np.linspace(0.0, t_end, 2001),
        np.concatenate([np.arange(options.eos_steps + 1) * eta for eta in etas]),
    )
    return etas, t_end, fine[fine <= t_end]


def _inertial_grid(options: FlowVsDescentOptions):
    return np.linspace(0.0, options.inertial_t1, 601)


def _baselines_grid(options: FlowVsDescentOptions, lam0: float):
    return np.linspace(0.0, options.baseline_iters / lam0, 401)


def shared(obj: Objective, options: FlowVsDescentOptions) -> Shared:
    """`λ_max(θ₀)` and the reference gradient flow on every study's grid (see `Shared`)."""
    lam0 = float(eqx.filter_jit(sharpness)(obj, obj.initial_state()).value)
    grids = (
        [options.order_t],
        _sharpness_grid(options, lam0)[2],
        _inertial_grid(options),
        _baselines_grid(options, lam0),
    )
    ts = np.unique(np.concatenate(grids))
    flow = solve(
        obj, GradientFlow.reference(), t1=float(ts[-1]), ts=ts, stop=LossBelow(options.tol)
    )
    return Shared(lambda0=lam0, flow=flow)


def order_figure(
    obj: Objective, options: FlowVsDescentOptions, path: pathlib.Path, common: Shared
) -> dict:
    """Figure 1: gap to the gradient flow (order 1) and to the modified flow (order 2)."""
    t = options.order_t
    modified = convergence_order(
        obj, step_sizes=list(options.order_steps), t=t, dynamics=ModifiedFlow.reference(1.0)
    )
    # The gradient flow is the shared reference flow (what `convergence_order` would solve
    # with `dynamics=GradientFlow.reference()`, saved at `t` among other times); the descent
    # runs are those `convergence_order` ran (same compiled solve).
    flow = common.flow_on([t])
    gaps = []
    for eta in options.order_steps:
        gd = solve(obj, GradientDescent(eta), num_steps=round(t / eta), ts=[t])
        gaps.append(np.linalg.norm(np.asarray(gd.params[-1]) - np.asarray(flow.params[0])))
    gaps = jnp.asarray(np.array(gaps), modified.gaps.dtype)
    slope, intercept = loglog_slope(modified.step_sizes, gaps)
    plain = ConvergenceOrder(
        t=float(t),
        step_sizes=modified.step_sizes,
        gaps=gaps,
        slope=slope,
        intercept=intercept,
        flow_loss=flow.loss[0],
        label="gradient flow",
    )
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for order, marker in ((plain, "o"), (modified, "s")):
        eta, gap = np.asarray(order.step_sizes), np.asarray(order.gaps)
        ax.loglog(eta, gap, marker, label=f"{order.label}: slope {float(order.slope):.2f}")
        fit = np.exp(float(order.intercept)) * eta ** float(order.slope)
        ax.loglog(eta, fit, "-", color=ax.lines[-1].get_color(), lw=1, alpha=0.6)
    ax.set_xlabel("step size η")
    ax.set_ylabel(f"‖θ_GD(t) − θ(t)‖ at t = {options.order_t:g}")
    ax.set_title("Descent tracks the modified flow to O(η²)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return dict(
        slope_flow=float(plain.slope),
        slope_modified=float(modified.slope),
        gaps_flow=np.asarray(plain.gaps).tolist(),
        gaps_modified=np.asarray(modified.gaps).tolist(),
    )


def sharpness_figure(
    obj: Objective, options: FlowVsDescentOptions, path: pathlib.Path, common: Shared
) -> dict:
    """Figure 2: descent below and above `2/λ_max(θ₀)`: `η·λ_max`, loss, gap to the flow."""
    lam0 = common.lambda0
    stop = LossBelow(options.tol)
    etas, _, fine = _sharpness_grid(options, lam0)
    flow = common.flow_on(fine)
    flow_lam = np.asarray(sharpness_along(obj, flow))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    rows = []
    flow_ts = np.asarray(flow.ts)
    for factor, eta in zip(options.factors, etas):
        gd = solve(
            obj,
            GradientDescent(eta),
            num_steps=options.eos_steps,
            num_saves=options.eos_steps + 1,
            stop=stop,
            throw=False,
        )
        lam = np.asarray(sharpness_along(obj, gd))
        ok = np.asarray(gd.valid)
        ts, loss = np.asarray(gd.ts)[ok], np.asarray(gd.loss)[ok]
        idx = np.abs(flow_ts[None, :] - ts[:, None]).argmin(axis=1)
        flow_params = np.asarray(flow.params)[idx]
        gap = np.linalg.norm(np.asarray(gd.params)[ok] - flow_params, axis=1)
        label = f"η = {factor:g}·2/λ₀ = {eta:.3g}"
        axes[0].plot(ts, eta * lam[ok], label=label)
        axes[1].semilogy(ts, _positive(loss), label=label)
        axes[2].semilogy(ts[1:], _positive(gap[1:]), label=label)
        normalised = eta * lam[ok]
        rows.append(
            dict(
                factor=factor,
                eta=eta,
                steps=int(gd.num_steps),
                result=str(gd.message),
                eta_lambda_start=float(normalised[0]),
                eta_lambda_max=float(normalised.max()),
                eta_lambda_end=float(normalised[-1]),
                loss_increases=int(np.sum(np.diff(loss) > 0)),
                first_step_below_2=int(np.argmax(normalised < 2)) if normalised.min() < 2 else -1,
                max_gap=float(np.nanmax(gap)),
            )
        )
    ok = np.asarray(flow.valid)
    axes[1].semilogy(flow_ts[ok], _positive(np.asarray(flow.loss)[ok]), "k--", label="flow")
    axes[0].axhline(2.0, color="k", ls=":", lw=1.2, label="η·λ_max = 2")
    axes[0].set_ylim(0, min(6.0, 1.1 * max(r["eta_lambda_max"] for r in rows)))
    axes[0].set(xlabel="time t = τη", ylabel="η·λ_max(∇²F(θ_τ))", title="Normalised sharpness")
    axes[1].set(xlabel="time t = τη", ylabel="loss F(θ)", title="Loss (flow dashed)")
    axes[2].set(
        xlabel="time t = τη",
        ylabel="‖θ_GD(τη) − θ_GF(τη)‖",
        title="Gap to the gradient flow",
    )
    for ax in axes:
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"Sharpness and the edge of stability (λ_max(θ₀) = {lam0:.3f}, 2/λ₀ = {2 / lam0:.3f})"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    ok_flow = np.isfinite(flow_lam)
    return dict(
        lambda0=lam0,
        flow_lambda_end=float(flow_lam[ok_flow][-1]),
        flow_lambda_max=float(flow_lam[ok_flow].max()),
        runs=rows,
    )


def inertial_figure(
    obj: Objective, options: FlowVsDescentOptions, path: pathlib.Path, common: Shared
) -> dict:
    """Figure 3: the inertial flow for several `(α, β)`, its discretisation, the gradient flow."""
    stop = LossBelow(options.tol)
    t1 = options.inertial_t1
    ts = _inertial_grid(options)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    flow = common.flow_on(ts)
    ok = np.asarray(flow.valid)
    ax.semilogy(ts[ok], _positive(np.asarray(flow.loss)[ok]), "k-", lw=2, label="gradient flow")
    reached = bool(common.flow.converged) and float(common.flow.stop_time) <= t1
    times = {"gradient flow": float(common.flow.stop_time) if reached else np.inf}
    h = options.inertial_h
    for alpha in options.alphas:
        for beta in options.betas:
            dyn = InertialFlow(alpha, beta)
            traj = solve(obj, dyn, t1=t1, ts=ts, stop=stop, throw=False)
            ok = np.asarray(traj.valid)
            line = ax.semilogy(
                ts[ok],
                _positive(np.asarray(traj.loss)[ok]),
                ls="-" if beta == 0 else "--",
                label=f"α = {alpha:g}, β = {beta:g}",
            )[0]
            disc = solve(
                obj,
                InertialDescent(h, alpha, beta),
                num_steps=round(t1 / h),
                num_saves=301,
                stop=stop,
                throw=False,
            )
            okd = np.asarray(disc.valid)
            ax.semilogy(
                np.asarray(disc.ts)[okd][::6],
                _positive(np.asarray(disc.loss)[okd][::6]),
                ".",
                ms=3,
                color=line.get_color(),
            )
            name = f"alpha={alpha:g}, beta={beta:g}"
            times[name] = float(traj.stop_time) if bool(traj.converged) else np.inf
            times[name + " (discrete)"] = float(disc.stop_time) if bool(disc.converged) else np.inf
    ax.set_xlabel("time t (algorithm: j·h, dots)")
    ax.set_ylabel("loss F(θ(t))")
    ax.set_title(f"Inertial dynamics (dots: explicit algorithm, h = {h:g})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return dict(time_to_tol=times)


def baselines_figure(
    obj: Objective, options: FlowVsDescentOptions, path: pathlib.Path, common: Shared
) -> dict:
    """Figure 4: flow, descent and the Optimistix baselines against iterations."""
    stop = LossBelow(options.tol)
    eta = 1 / common.lambda0
    iters = options.baseline_iters
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    flow = common.flow_on(_baselines_grid(options, common.lambda0))
    ok = np.asarray(flow.valid)
    ax.semilogy(
        np.asarray(flow.ts)[ok] / eta,
        _positive(np.asarray(flow.loss)[ok]),
        "k--",
        lw=2,
        label="gradient flow (t/η)",
    )
    runs = [(f"GD η = 1/λ₀ = {eta:.3f}", GradientDescent(eta))]
    runs += [
        (b.name, b)
        for b in (
            OptimistixBaseline.gauss_newton(),
            OptimistixBaseline.levenberg_marquardt(),
            OptimistixBaseline.bfgs(),
        )
    ]
    steps = {}
    for label, dyn in runs:
        traj = solve(obj, dyn, num_steps=iters, num_saves=iters + 1, stop=stop, throw=False)
        ok = np.asarray(traj.valid)
        ax.semilogy(np.asarray(traj.steps)[ok], _positive(np.asarray(traj.loss)[ok]), label=label)
        steps[label] = dict(
            steps=int(traj.num_steps), final_loss=float(traj.final_loss), result=traj.message
        )
    ax.set_xlabel("iterations (flow: t/η)")
    ax.set_ylabel("loss F(θ)")
    ax.set_title("Second-order baselines (Optimistix) on the same objective")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return steps


def run(options: FlowVsDescentOptions) -> dict[str, pathlib.Path]:
    """Runs the four studies, writes the figures and `summary.txt`, and returns their paths."""
    out = pathlib.Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    obj = objective(options)
    start = time.perf_counter()
    _say("[0/4] sharpness at θ₀ and the reference gradient flow ...")
    common = shared(obj, options)
    _say(f"      done in {time.perf_counter() - start:.1f} s")
    paths, summary = {}, {}
    studies = (
        ("order", order_figure, "convergence orders (gradient flow, modified flow)"),
        ("sharpness", sharpness_figure, "sharpness and the edge of stability"),
        ("inertial", inertial_figure, "inertial flow and algorithm"),
        ("baselines", baselines_figure, "Gauss-Newton, Levenberg-Marquardt, BFGS"),
    )
    for i, (name, study, what) in enumerate(studies, 1):
        start = time.perf_counter()
        _say(f"[{i}/{len(studies)}] {what} ...")
        paths[name] = out / f"{name}.png"
        summary[name] = study(obj, options, paths[name], common)
        _say(f"      done in {time.perf_counter() - start:.1f} s")
    lines = [f"flowdip reproduce flow-vs-descent: {dataclasses.asdict(options)}", ""]
    for name, values in summary.items():
        lines.append(f"[{name}]")
        if name == "sharpness":
            lines.append(
                f"  lambda0 = {values['lambda0']:.6g}; flow: lambda_max end "
                f"{values['flow_lambda_end']:.6g}, max {values['flow_lambda_max']:.6g}"
            )
            for row in values["runs"]:
                lines.append(
                    "  "
                    + ", ".join(
                        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in row.items()
                    )
                )
        else:
            for key, value in values.items():
                lines.append(f"  {key}: {value}")
        lines.append("")
    paths["summary"] = out / "summary.txt"
    paths["summary"].write_text("\n".join(lines))
    _say("\n".join(lines))
    return paths
