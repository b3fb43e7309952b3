"""Continuous against discrete: `compare` two trajectories, measure the order of the gap."""

import math
from collections.abc import Sequence

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .._dynamics import (
    AbstractDiscreteDynamics,
    AbstractDynamics,
    AbstractFlow,
    GradientDescent,
    GradientFlow,
)
from .._objective import Objective
from .._solve import solve, Trajectory
from .._typing import Array, Bool, checked, Float
from .fits import fit_rate, loglog_slope


class Comparison(eqx.Module):
    """A flow and a descent run of the same objective, on common times `t = τη`.

    **Fields:** `ts`, `valid` (both runs still going), `loss_flow`, `loss_descent`,
    `param_gap` (`‖θ_GD(τη) − θ_GF(τη)‖`), `loss_ratio` (descent over flow),
    `recovery_error_flow`, `recovery_error_descent`, `rate_flow`, `rate_descent` (fitted
    exponential rates), `step_size` (`η`), and the two trajectories.
    """

    ts: Float[Array, " T"]
    valid: Bool[Array, " T"]
    loss_flow: Float[Array, " T"]
    loss_descent: Float[Array, " T"]
    param_gap: Float[Array, " T"]
    loss_ratio: Float[Array, " T"]
    recovery_error_flow: Float[Array, " T"]
    recovery_error_descent: Float[Array, " T"]
    rate_flow: Float[Array, ""]
    rate_descent: Float[Array, ""]
    step_size: Float[Array, ""]
    flow: Trajectory
    descent: Trajectory


@checked
def compare(flow: Trajectory, descent: Trajectory, *, rtol: float = 1e-9) -> Comparison:
    """Aligns a flow and a descent trajectory of the same objective at the descent's times.

    The flow must have been saved at every descent save time (`ts=descent.ts`, or a superset
    such as a fine grid shared by several step sizes); both runs need `save_params=True`.

    **Returns:** a [`flowdip.Comparison`][].
    """
    for name, traj in (("flow", flow), ("descent", descent)):
        if not isinstance(traj, Trajectory):
            raise TypeError(f"{name} must be a flowdip.Trajectory; got {type(traj).__name__}.")
    # Asked of the dynamics rather than tested by type: a flow's steps have no fixed time.
    if flow.dynamics.time_per_step is not None:
        raise ValueError(
            f"flow must be a run of a flow; got a run of {flow.dynamics.label()} (pass the "
            "flow first, the descent second)."
        )
    if descent.dynamics.time_per_step is None:
        raise ValueError(
            f"descent must be a run of a discrete dynamics; got a run of "
            f"{descent.dynamics.label()}."
        )
    if not (math.isfinite(rtol) and rtol >= 0):
        raise ValueError(f"rtol must be a finite number >= 0; got rtol={rtol!r}.")
    # Both runs start from the same θ₀ on the same objective, so their F(θ₀) agree (to the
    # round-off of two compiled programs); different objectives almost surely do not.
    f_flow, f_gd = np.asarray(flow.initial_loss), np.asarray(descent.initial_loss)
    if f_flow.shape != f_gd.shape or not np.allclose(f_flow, f_gd, rtol=1e-6, atol=1e-12):
        raise ValueError(
            "flow and descent are runs of different objectives: their initial losses "
            f"F(θ₀) differ ({f_flow} and {f_gd}); solve both on the same Objective."
        )
    flow_ts, gd_ts = np.asarray(flow.ts), np.asarray(descent.ts)
    idx = np.searchsorted(flow_ts, gd_ts).clip(0, flow_ts.size - 1)
    idx_lo = (idx - 1).clip(0)
    idx = np.where(np.abs(flow_ts[idx_lo] - gd_ts) < np.abs(flow_ts[idx] - gd_ts), idx_lo, idx)
    matched = np.abs(flow_ts[idx] - gd_ts) <= rtol * np.maximum(np.abs(gd_ts), 1)
    if not np.all(matched):
        raise ValueError(
            f"{int(np.sum(~matched))} of the descent's {gd_ts.size} save times are not among "
            "the flow's save times; solve the flow with ts=descent.ts (or a superset)."
        )
    flow = flow.at_saves(jnp.asarray(idx))
    if flow.params is None or descent.params is None:
        raise ValueError("compare needs parameters at the save times: solve with save_params=True.")
    if flow.params.shape != descent.params.shape:
        raise ValueError(
            f"The trajectories' parameters have shapes {flow.params.shape} and "
            f"{descent.params.shape}: solve both with the same Objective (same reduced path)."
        )
    valid = flow.valid & descent.valid
    nan = jnp.full((), jnp.nan, flow.loss.dtype)
    gap = jnp.linalg.norm(descent.params - flow.params, axis=-1)
    eta = descent.dynamics.step_size
    eta = nan if eta is None else eta
    return Comparison(
        ts=descent.ts,
        valid=valid,
        loss_flow=flow.loss,
        loss_descent=descent.loss,
        param_gap=jnp.where(valid, gap, nan),
        loss_ratio=jnp.where(valid, descent.loss / flow.loss, nan),
        recovery_error_flow=flow.recovery_error,
        recovery_error_descent=descent.recovery_error,
        rate_flow=fit_rate(flow.ts, flow.loss, flow.valid),
        rate_descent=fit_rate(descent.ts, descent.loss, descent.valid),
        step_size=jnp.asarray(eta, flow.loss.dtype),
        flow=flow,
        descent=descent,
    )


class ConvergenceOrder(eqx.Module):
    """The gap `‖θ_GD(t) − θ_flow(t)‖` at one time `t` over step sizes, with its fitted
    log-log slope (`≈ 1` for descent against the gradient flow: explicit Euler is order 1).

    **Fields:** `t`, `step_sizes`, `gaps`, `slope`, `intercept` (`log gap ≈ intercept +
    slope · log η`), `flow_loss` (the flow's loss at `t`), `label` (the flow compared with;
    for a [`flowdip.ModifiedFlow`][] the slope is `≈ 2`).
    """

    t: float = eqx.field(static=True)
    step_sizes: Float[Array, " S"]
    gaps: Float[Array, " S"]
    slope: Float[Array, ""]
    intercept: Float[Array, ""]
    flow_loss: Float[Array, ""]
    label: str = eqx.field(static=True, default="gradient flow")


@checked
def convergence_order(
    objective: Objective,
    *,
    step_sizes: Sequence[float] | np.ndarray,
    t: float,
    dynamics: AbstractFlow | Sequence[AbstractFlow] | None = None,
    descent: AbstractDiscreteDynamics | None = None,
) -> ConvergenceOrder | tuple[ConvergenceOrder, ...]:
    """Runs gradient descent at each step size to time `t` and measures its gap to a flow
    (or to each of several flows).

    **Arguments:**

    - `objective`: the [`flowdip.Objective`][].
    - `step_sizes`: at least two step sizes; each must divide `t` (`t/η` an integer).
    - `t`: the comparison time.
    - `dynamics`: the flow to compare with (default: a tight flow, Dopri8 at 1e-12 in
      float64, Tsit5 at 1e-6 in float32), or a list of flows. A flow with a `step_size`
      (a [`flowdip.ModifiedFlow`][]) is re-solved at each `η`.
    - `descent`: the discrete dynamics (default [`flowdip.GradientDescent`][]); its step size
      is set to each `η` (e.g. [`flowdip.InertialDescent`][] against
      [`flowdip.InertialFlow`][]).

    **Returns:** a [`flowdip.ConvergenceOrder`][] for one flow, or a tuple of them (same order)
    for a list.
    """
    etas = [float(e) for e in step_sizes]
    if len(etas) < 2:
        raise ValueError("convergence_order needs at least two step sizes.")
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"t must be a finite time > 0; got t={t}.")
    for eta in etas:
        if not (math.isfinite(eta) and eta > 0):
            raise ValueError(f"step sizes must be > 0; got {eta}.")
        if abs(t / eta - round(t / eta)) > 1e-9 * t / eta:
            raise ValueError(f"t={t} is not a whole number of steps of size {eta}.")
    single = dynamics is None or isinstance(dynamics, AbstractDynamics)
    if dynamics is None:
        if objective.dtype == jnp.float64:
            dynamics = GradientFlow.reference()
        else:
            dynamics = GradientFlow(rtol=1e-6, atol=1e-8)
    flows = [dynamics] if single else list(dynamics)
    if not flows:
        raise ValueError("convergence_order needs at least one flow in dynamics.")
    descent = GradientDescent(1.0) if descent is None else descent
    finals = []
    for eta in etas:
        gd = solve(objective, descent.with_step_size(eta), num_steps=round(t / eta), ts=[t])
        finals.append(gd.params[-1])
    etas_arr = jnp.asarray(etas, objective.dtype)
    orders = []
    for flow in flows:
        gaps, losses = [], []
        # A flow that does not depend on the step is solved once.
        per_step = flow.step_size is not None
        sol = None if per_step else solve(objective, flow, t1=t, ts=[t])
        for eta, final in zip(etas, finals):
            if per_step:
                sol = solve(objective, flow.with_step_size(eta), t1=t, ts=[t])
            gaps.append(jnp.linalg.norm(final - sol.params[-1]))
            losses.append(sol.loss[-1])
        gaps_arr = jnp.stack(gaps)
        slope, intercept = loglog_slope(etas_arr, gaps_arr)
        orders.append(
            ConvergenceOrder(
                t=float(t),
                step_sizes=etas_arr,
                gaps=gaps_arr,
                slope=slope,
                intercept=intercept,
                flow_loss=losses[-1],
                label=flow.label(),
            )
        )
    return orders[0] if single else tuple(orders)
