"""`flowdip reproduce flow-vs-descent`: flow against descent beyond the papers.

Four figures on one instance of the P1 protocol (two-layer DIP, sigmoid, Rademacher `V`,
Gaussian `A` with N(0, 1) entries, `x̄` Gaussian, MSE):

1. `order.png`: the gap `‖θ_GD(t) − θ(t)‖` at a fixed time over step sizes, to the gradient
   flow (slope 1) and to the modified flow `θ' = −∇(F + (η/4)‖∇F‖²)` (slope 2).
2. `sharpness.png`: descent at step sizes below and above `2/λ_max(θ₀)`: the normalised
   sharpness `η·λ_max` along each run, the loss, and the gap to the gradient flow.
3. `inertial.png`: the inertial flow (P4, docs/theory.md §9) for several `(α, β)` against the
   gradient flow, with the explicit inertial algorithm on top.
4. `baselines.png`: gradient flow, gradient descent, Gauss–Newton, Levenberg–Marquardt and
   BFGS (Optimistix) on one axis of iterations.

`summary.txt` lists the numbers quoted by the docs page (`docs/flow-vs-descent.md`);
`data.npz` holds the curves the figures draw (`flowdip plot DIR` redraws them).
"""

import dataclasses
import json
import math
import os
import pathlib
import time
from collections.abc import Callable, Sequence

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
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
from . import _fvd_figures as figures
from ._folder import load_tree, save_tree


@dataclasses.dataclass(frozen=True)
class Options:
    """Every choice of the experiment.

    **Arguments:**

    - `n`: signal size.
    - `m`: number of measurements.
    - `k`: hidden width.
    - `seed`: seed of the instance and the network.
    - `order_t`: the time at which the order study measures the gaps.
    - `order_steps`: the step sizes of the order study.
    - `factors`: descent step sizes of the sharpness study, as multiples of `2/λ_max(θ₀)`.
    - `eos_steps`: descent steps per run of the sharpness study.
    - `alphas`: the inertial parameters `α` (friction).
    - `betas`: the inertial parameters `β` (Hessian damping).
    - `inertial_t1`: horizon of the inertial study.
    - `inertial_h`: step of the inertial algorithm.
    - `baseline_iters`: iterations of the second-order baselines.
    - `tol`: loss floor at which runs stop.
    - `out`: output folder.
    """

    n: int = 20
    m: int = 10
    k: int = 200
    seed: int = 0
    order_t: float = 2.0
    order_steps: Sequence[float] = dataclasses.field(
        default=(0.25, 0.125, 0.0625, 0.03125, 0.015625), metadata=dict(positive=True)
    )
    factors: Sequence[float] = dataclasses.field(
        default=(0.5, 1.1, 1.5, 2.5, 8.0), metadata=dict(positive=True)
    )
    eos_steps: int = 300
    alphas: Sequence[float] = dataclasses.field(
        default=(0.5, 2.0, 6.0), metadata=dict(positive=True)
    )
    betas: Sequence[float] = (0.0, 1.0)
    inertial_t1: float = 60.0
    inertial_h: float = 0.05
    baseline_iters: int = 300
    tol: float = 1e-12
    out: str | os.PathLike = pathlib.Path("results/flow-vs-descent")

    def __post_init__(self):
        object.__setattr__(self, "out", pathlib.Path(self.out))
        for name in ("n", "m", "k", "eos_steps", "baseline_iters"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {name}={value!r}.")
        for name in ("order_t", "inertial_t1", "inertial_h", "tol"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number; got {name}={value!r}.")
        for name, least in (("order_steps", 2), ("factors", 1), ("alphas", 1), ("betas", 1)):
            value = tuple(getattr(self, name))
            zero_ok = name == "betas"
            if len(value) < least or any(
                not (math.isfinite(v) and (v > 0 or (zero_ok and v == 0))) for v in value
            ):
                what = "numbers >= 0" if zero_ok else "positive numbers"
                raise ValueError(f"{name} must be at least {least} {what}; got {name}={value!r}.")
            object.__setattr__(self, name, value)

    @classmethod
    def quick(cls, **overrides) -> "Options":
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


def objective(options: Options) -> Objective:
    """The instance: P1's protocol (unit-variance `A`, Gaussian `x̄`, sigmoid, Rademacher `V`)."""
    kp, kn = jr.split(jr.key(options.seed))
    problem = InverseProblem.compressed_sensing(kp, options.m, options.n, scaling="unit")
    net = TwoLayerDIP.init(kn, d=10, k=options.k, n=options.n)
    return Objective(problem, net)


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
        return self.flow.at_saves(jnp.asarray(idx))


def _sharpness_grid(options: Options, lam0: float):
    """Descent step sizes of the sharpness study, its horizon, and the flow's save times (a
    fine grid plus every descent save time, so that gaps are taken at equal times)."""
    etas = [f * 2 / lam0 for f in options.factors]
    t_end = max(etas) * options.eos_steps
    fine = np.union1d(
        np.linspace(0.0, t_end, 2001),
        np.concatenate([np.arange(options.eos_steps + 1) * eta for eta in etas]),
    )
    return etas, t_end, fine[fine <= t_end]


def _inertial_grid(options: Options):
    return np.linspace(0.0, options.inertial_t1, 601)


def _baselines_grid(options: Options, lam0: float):
    return np.linspace(0.0, options.baseline_iters / lam0, 401)


def shared(obj: Objective, options: Options) -> Shared:
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


def order_study(obj: Objective, options: Options, common: Shared) -> dict:
    """Study 1: the gap to the gradient flow (order 1) and to the modified flow (order 2) at
    `order_t`, over `order_steps`. **Returns:** the gaps and the fitted lines of both."""
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
    return dict(
        t=float(t),
        orders=[
            dict(
                label=order.label,
                step_sizes=np.asarray(order.step_sizes),
                gaps=np.asarray(order.gaps),
                slope=float(order.slope),
                intercept=float(order.intercept),
            )
            for order in (plain, modified)
        ],
    )


def sharpness_study(obj: Objective, options: Options, common: Shared) -> dict:
    """Study 2: descent below and above `2/λ_max(θ₀)`. **Returns:** per run `η·λ_max`, the
    loss and the gap to the flow along the run, and the flow's loss."""
    lam0 = common.lambda0
    stop = LossBelow(options.tol)
    etas, _, fine = _sharpness_grid(options, lam0)
    flow = common.flow_on(fine)
    flow_lam = np.asarray(sharpness_along(obj, flow))
    runs = []
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
        normalised = eta * lam[ok]
        runs.append(
            dict(
                factor=factor,
                eta=eta,
                steps=int(gd.num_steps),
                result=str(gd.message),
                ts=ts,
                eta_lambda=normalised,
                loss=loss,
                gap=gap,
            )
        )
    ok = np.asarray(flow.valid)
    ok_flow = np.isfinite(flow_lam)
    return dict(
        lambda0=lam0,
        flow_ts=flow_ts[ok],
        flow_loss=np.asarray(flow.loss)[ok],
        flow_lambda_end=float(flow_lam[ok_flow][-1]),
        flow_lambda_max=float(flow_lam[ok_flow].max()),
        runs=runs,
    )


def inertial_study(obj: Objective, options: Options, common: Shared) -> dict:
    """Study 3: the inertial flow for several `(α, β)` and its explicit algorithm, against
    the gradient flow. **Returns:** their losses and times to reach `tol`."""
    stop = LossBelow(options.tol)
    t1 = options.inertial_t1
    ts = _inertial_grid(options)
    flow = common.flow_on(ts)
    ok = np.asarray(flow.valid)
    reached = bool(common.flow.converged) and float(common.flow.stop_time) <= t1
    times = {"gradient flow": float(common.flow.stop_time) if reached else np.inf}
    h = options.inertial_h
    runs = []
    for alpha in options.alphas:
        for beta in options.betas:
            dyn = InertialFlow(alpha, beta)
            traj = solve(obj, dyn, t1=t1, ts=ts, stop=stop, throw=False)
            okt = np.asarray(traj.valid)
            disc = solve(
                obj,
                InertialDescent(h, alpha, beta),
                num_steps=round(t1 / h),
                num_saves=301,
                stop=stop,
                throw=False,
            )
            okd = np.asarray(disc.valid)
            runs.append(
                dict(
                    alpha=alpha,
                    beta=beta,
                    ts=ts[okt],
                    loss=np.asarray(traj.loss)[okt],
                    disc_ts=np.asarray(disc.ts)[okd][::6],
                    disc_loss=np.asarray(disc.loss)[okd][::6],
                )
            )
            name = f"alpha={alpha:g}, beta={beta:g}"
            times[name] = float(traj.stop_time) if bool(traj.converged) else np.inf
            times[name + " (discrete)"] = float(disc.stop_time) if bool(disc.converged) else np.inf
    return dict(
        h=h, flow_ts=ts[ok], flow_loss=np.asarray(flow.loss)[ok], runs=runs, time_to_tol=times
    )


def baselines_study(obj: Objective, options: Options, common: Shared) -> dict:
    """Study 4: flow, descent and the Optimistix baselines against iterations."""
    stop = LossBelow(options.tol)
    eta = 1 / common.lambda0
    iters = options.baseline_iters
    flow = common.flow_on(_baselines_grid(options, common.lambda0))
    ok = np.asarray(flow.valid)
    runs = [(f"GD η = 1/λ₀ = {eta:.3f}", GradientDescent(eta))]
    runs += [
        (b.name, b)
        for b in (
            OptimistixBaseline.gauss_newton(),
            OptimistixBaseline.levenberg_marquardt(),
            OptimistixBaseline.bfgs(),
        )
    ]
    steps, curves = {}, []
    for label, dyn in runs:
        traj = solve(obj, dyn, num_steps=iters, num_saves=iters + 1, stop=stop, throw=False)
        okt = np.asarray(traj.valid)
        curves.append(
            dict(label=label, steps=np.asarray(traj.steps)[okt], loss=np.asarray(traj.loss)[okt])
        )
        steps[label] = dict(
            steps=int(traj.num_steps), final_loss=float(traj.final_loss), result=traj.message
        )
    return dict(
        flow_iters=np.asarray(flow.ts)[ok] / eta,
        flow_loss=np.asarray(flow.loss)[ok],
        runs=curves,
        steps=steps,
    )


def run(options: Options, log: Callable[[str], None] = print) -> dict[str, pathlib.Path]:
    """Runs the four studies, writes the figures, `summary.txt` and `data.npz` (the curves),
    and returns their paths."""
    out = pathlib.Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    obj = objective(options)
    start = time.perf_counter()
    log("[0/4] sharpness at θ₀ and the reference gradient flow ...")
    common = shared(obj, options)
    log(f"      done in {time.perf_counter() - start:.1f} s")
    data = {}
    studies = (
        ("order", order_study, "convergence orders (gradient flow, modified flow)"),
        ("sharpness", sharpness_study, "sharpness and the edge of stability"),
        ("inertial", inertial_study, "inertial flow and algorithm"),
        ("baselines", baselines_study, "Gauss-Newton, Levenberg-Marquardt, BFGS"),
    )
    for i, (name, study, what) in enumerate(studies, 1):
        start = time.perf_counter()
        log(f"[{i}/{len(studies)}] {what} ...")
        data[name] = study(obj, options, common)
        log(f"      done in {time.perf_counter() - start:.1f} s")
    paths = {"data": out / "data.npz"}
    # The summaries' dicts of names (times, results) go with the arrays as one JSON string.
    saved = {
        name: {k: v for k, v in d.items() if k not in ("time_to_tol", "steps")}
        for name, d in data.items()
    }
    saved["names"] = json.dumps(
        dict(time_to_tol=data["inertial"]["time_to_tol"], steps=data["baselines"]["steps"])
    )
    save_tree(paths["data"], saved)
    paths |= figures.draw(data, out)
    lines = figures.summary_lines(options, data)
    paths["summary"] = out / "summary.txt"
    paths["summary"].write_text("\n".join(lines))
    log("\n".join(lines))
    return paths


def redraw(folder: str | pathlib.Path) -> dict[str, pathlib.Path]:
    """Redraws the four figures from `data.npz` in `folder`.

    **Returns:** the paths written: `order`, `sharpness`, `inertial`, `baselines`.
    """
    folder = pathlib.Path(folder)
    return figures.draw(load_tree(folder / "data.npz"), folder)
