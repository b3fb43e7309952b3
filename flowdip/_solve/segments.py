"""Runs in segments for batched callers, whatever the kind of dynamics: start a run, advance it
a segment, read its outcome. A discrete dynamics steps with [`descent_run_to`][]; a flow
integrates with [`flow_run_to`][]. Either way a run takes the same steps wherever its segments
end, which lets a sweep drop its stopped runs between segments."""

import equinox as eqx
import jax.numpy as jnp

from .._dynamics import AbstractDiscreteDynamics, AbstractDynamics, AbstractFlow, AbstractStopRule
from .._objective import Objective
from .._typing import Array, Bool, Float, Int, PyTree
from .flow import flow_result, flow_run_to, flow_start, FlowState
from .loop import descent_result, descent_run_to, descent_start, DescentState, Thresholds
from .trajectory import RESULTS


class Segmented(eqx.Module):
    """One run advanced in segments: its carry ([`DescentState`][] or [`FlowState`][], whose
    `done` says whether the run has stopped), `F(θ₀)` (`initial_loss`) and, for a discrete
    dynamics, where it is `diverged` (`threshold`)."""

    carry: DescentState | FlowState
    initial_loss: Float[Array, ""]
    threshold: Thresholds | None


class Outcome(eqx.Module):
    """Where a run stands: the loss `final_loss` and parameters `parameters` it stopped at (or
    has reached), its `result` code (meaningful once stopped), `num_steps` (steps, or a flow's
    accepted solver steps), `stop_time`, and `loss_rose` (a descent's loss rose at some step;
    `None` for a flow)."""

    final_loss: Float[Array, ""]
    parameters: PyTree
    result: RESULTS
    num_steps: Int[Array, ""]
    stop_time: Float[Array, ""]
    loss_rose: Bool[Array, ""] | None


def can_segment(dynamics: AbstractDynamics) -> bool:
    """Whether a batched caller can run `dynamics` in segments with [`start_run`][],
    [`run_segment`][] and [`run_outcome`][] (every discrete dynamics and every flow)."""
    return isinstance(dynamics, AbstractDiscreteDynamics | AbstractFlow)


def _check(dynamics):
    if not can_segment(dynamics):
        raise TypeError(f"dynamics must be a flowdip dynamics; got dynamics={dynamics!r}.")


def horizon_array(dynamics: AbstractDynamics, horizon: int | float) -> Array:
    """A horizon as `horizon_of` gives it, as the array the traced functions take: a step
    count (int32) for a discrete dynamics, a time for a flow."""
    _check(dynamics)
    if isinstance(dynamics, AbstractDiscreteDynamics):
        return jnp.asarray(horizon, jnp.int32)
    return jnp.asarray(horizon, jnp.result_type(float))


def segment_length(
    dynamics: AbstractDynamics,
    horizon: int | float,
    segments: int,
    *,
    min_steps: int = 1,
    doublings: int = 0,
) -> Array | int:
    """The steps of one segment when a run is cut in about `segments` of them: of the horizon
    for a discrete dynamics (an array: it does not recompile; at least `min_steps`), of the
    step budget `max_steps` for a flow (an int: it bounds a compiled loop).

    A discrete dynamics' segment is doubled `doublings` times (up to the whole horizon), which
    lets a caller lengthen the segments while none of its runs stops; a flow's stays as it is
    (each length would be another compiled loop)."""
    _check(dynamics)
    if isinstance(dynamics, AbstractDiscreteDynamics):
        length = max(1, min_steps, -(-(horizon + 1) // segments))
        if length < horizon + 1:
            length = min(length << min(doublings, 31), horizon + 1)
        return jnp.asarray(length, jnp.int32)
    return max(1, -(-dynamics.max_steps // segments))


def start_run(objective: Objective, dynamics: AbstractDynamics, horizon: Array) -> Segmented:
    """A run at its start (`horizon` as from [`horizon_array`][])."""
    _check(dynamics)
    if isinstance(dynamics, AbstractDiscreteDynamics):
        start = descent_start(objective, dynamics)
        return Segmented(start.state, start.initial_loss, start.threshold)
    carry = flow_start(objective, dynamics, t1=horizon)
    return Segmented(carry, objective.value(objective.initial_state()), None)


def run_segment(
    objective: Objective,
    dynamics: AbstractDynamics,
    run: Segmented,
    length: Array | int,
    *,
    horizon: Array,
    stop: AbstractStopRule | None,
) -> Segmented:
    """`run` advanced by `length` steps (as from [`segment_length`][]) or until it stops."""
    _check(dynamics)
    if isinstance(dynamics, AbstractDiscreteDynamics):
        target = jnp.minimum(run.carry.step + length, horizon + 1)
        carry = descent_run_to(
            objective,
            dynamics,
            run.carry,
            target,
            stop=stop,
            threshold=run.threshold,
            horizon=horizon,
        )
    else:
        target = run.carry.num_steps + length
        carry = flow_run_to(
            objective, dynamics, run.carry, target, t1=horizon, stop=stop, segment=length
        )
    return eqx.tree_at(lambda r: r.carry, run, carry)


def run_outcome(
    objective: Objective,
    dynamics: AbstractDynamics,
    run: Segmented,
    *,
    horizon: Array,
    stop: AbstractStopRule | None,
) -> Outcome:
    """What `run` records: the same values as [`flowdip.solve`][]'s `Trajectory` of the run."""
    _check(dynamics)
    carry = run.carry
    if isinstance(dynamics, AbstractDiscreteDynamics):
        loss = carry.last_loss
        code = descent_result(carry, threshold=run.threshold, horizon=horizon, stop=stop)
        return Outcome(
            final_loss=loss,
            parameters=dynamics.parameters(carry.state),
            result=code,
            num_steps=carry.step,
            stop_time=carry.step.astype(loss.dtype) * dynamics.step_size.astype(loss.dtype),
            loss_rose=carry.loss_rose,
        )
    theta = dynamics.parameters(carry.y)
    loss = objective.value(theta)
    return Outcome(
        final_loss=loss,
        parameters=theta,
        result=flow_result(carry, loss, stop=stop),
        num_steps=carry.num_accepted,
        stop_time=carry.t,
        loss_rose=None,
    )
