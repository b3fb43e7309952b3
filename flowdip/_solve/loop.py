"""The traced solve: the loops that run one dynamics on one objective, written to be jitted,
vmapped and segmented by their callers ([`flowdip.solve`][], the sweep engine, experiments).

Discrete dynamics step in a `lax.while_loop` whose carry is a typed [`DescentState`][]; the
loop can be run to any step and resumed, which is what lets a batched sweep stop, compact and
resume its runs. Flows are integrated by Diffrax, in one piece here or in segments (see
`flow.py`).
"""

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp

from .._dynamics import AbstractDiscreteDynamics, AbstractFlow, AbstractStopRule
from .._objective import Objective
from .._typing import Array, Bool, Float, Int, PyTree
from .flow import _flow_segment, flow_result, flow_start
from .trajectory import RESULTS, Trajectory


#: A descent is `diverged` once its loss exceeds `DIVERGE_FACTOR · max(F(θ₀), 1)` (the default
#: of [`flowdip.solve`][] and what sweeps use).
DIVERGE_FACTOR = 1e6

#: A descent is also `diverged` once its parameters are non-finite or their norm exceeds
#: `PARAM_FACTOR · max(‖θ₀‖, 1)`: a bounded activation (the sigmoid) saturates and keeps the
#: loss bounded while the parameters blow up. Real runs stay far below it (a catapult grows
#: the parameters a few times before converging).
PARAM_FACTOR = 1e3

#: A descent step "raises the loss" when `F(θ_{τ+1}) > (1 + _RISE_RTOL) F(θ_τ)`: the margin keeps
#: round-off on a plateau (where the true decrease is below float64 resolution) from counting.
_RISE_RTOL = 1e-9


def _nan_where(valid: Array, x: Array) -> Array:
    mask = valid.reshape(valid.shape + (1,) * (x.ndim - 1))
    return jnp.where(mask, x, jnp.full((), jnp.nan, x.dtype))


def _stats(objective: Objective, theta: PyTree, save_params: bool, save_signal: bool):
    x = objective.signal(theta)
    if objective.problem.x_true is None:
        rec = jnp.full((), jnp.nan, x.dtype)
    else:
        rec = jnp.linalg.norm(x - objective.problem.x_true)
    coords = objective.coordinates(theta)
    return (
        rec,
        jnp.linalg.norm(coords),
        coords if save_params else None,
        x if save_signal else None,
    )


class DescentState(eqx.Module):
    """The carry of a discrete dynamics' stepping loop (one run).

    **Fields:** `step` (`τ`, the steps taken), `state` (the dynamics' iteration state),
    `done` (the run has stopped), `last_loss` (`F` at the last step evaluated; `F(θ₀)` before
    the first), `last_norm` (`‖θ‖` at that step), `loss_rose` (the loss rose at some step).
    """

    step: Int[Array, ""]
    state: PyTree
    done: Bool[Array, ""]
    last_loss: Float[Array, ""]
    last_norm: Float[Array, ""]
    loss_rose: Bool[Array, ""]


class Thresholds(eqx.Module):
    """Where a discrete run is `diverged`: past the loss `loss` or the parameter norm `norm`."""

    loss: Float[Array, ""]
    norm: Float[Array, ""]


class DescentStart(eqx.Module):
    """What a discrete run starts from: the loop's first `state`, `F(θ₀)` (`initial_loss`) and
    the loss and parameter norm past which the run is `diverged` (`threshold`)."""

    state: DescentState
    initial_loss: Float[Array, ""]
    threshold: Thresholds


def _norm(theta: PyTree) -> Float[Array, ""]:
    # One pass over the parameters: O(k) on the reduced path, against the O(mk) step.
    leaves = jax.tree_util.tree_leaves(theta)
    return jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in leaves))


def descent_start(
    objective: Objective,
    dynamics: AbstractDiscreteDynamics,
    *,
    diverge_factor: float = DIVERGE_FACTOR,
    param_factor: float = PARAM_FACTOR,
    step_dtype=jnp.int32,
    stop: AbstractStopRule | None = None,
) -> DescentStart:
    """The stepping loop's initial carry, `F(θ₀)` and the divergence thresholds."""
    theta0 = objective.initial_state()
    state0 = dynamics.initial_state(objective, theta0)
    loss0 = objective.value(theta0)
    norm0 = _norm(theta0)
    threshold = Thresholds(
        loss=diverge_factor * jnp.maximum(loss0, 1),
        norm=param_factor * jnp.maximum(norm0, 1),
    )
    carry = DescentState(
        step=jnp.zeros((), step_dtype),
        state=state0,
        # A certified-unreachable stop rule ends the run before its first step.
        done=jnp.array(False) if stop is None else stop.unreachable(),
        last_loss=loss0,
        last_norm=norm0,
        loss_rose=jnp.array(False),
    )
    return DescentStart(carry, loss0, threshold)


def _discrete_flags(loss, norm, tau, threshold: Thresholds, horizon, stop):
    nonfinite = jnp.isnan(loss)
    # `~(norm <= …)` also catches non-finite parameters (a NaN norm).
    diverged = ~nonfinite & ((loss > threshold.loss) | ~(norm <= threshold.norm))
    converged = stop.met(loss) if stop is not None else jnp.array(False)
    return nonfinite, diverged, converged, tau >= horizon


def descent_run_to(
    objective: Objective,
    dynamics: AbstractDiscreteDynamics,
    carry: DescentState,
    target: Int[Array, ""],
    *,
    stop: AbstractStopRule | None,
    threshold: Thresholds,
    horizon: Int[Array, ""],
    unroll: int | None = None,
) -> DescentState:
    """Steps `carry` until the run stops or reaches step `target`.

    Each step is masked on its own, so running to `a` and then to `b` is step for step the
    same as running to `b` (what lets a batched sweep stop, compact and resume its runs).
    `unroll` overrides the dynamics' own unroll.
    """

    def cond(c: DescentState):
        return ~c.done & (c.step < target)

    def substep(c: DescentState) -> DescentState:
        tau = c.step
        active = ~c.done & (tau < target)
        loss, new_state = dynamics.step(objective, c.state)
        norm = _norm(dynamics.parameters(c.state))
        # `loss` is F(θ_τ) and `last_loss` F(θ_{τ−1}) (F(θ₀) itself on the first step).
        rose = c.loss_rose | (active & (loss > (1 + _RISE_RTOL) * c.last_loss))
        nonfinite, diverged, converged, at_horizon = _discrete_flags(
            loss, norm, tau, threshold, horizon, stop
        )
        stop_now = active & (nonfinite | diverged | converged | at_horizon)
        advance = active & ~stop_now
        state = jax.tree_util.tree_map(lambda a, b: jnp.where(advance, a, b), new_state, c.state)
        return DescentState(
            step=tau + advance.astype(tau.dtype),
            state=state,
            done=c.done | stop_now,
            last_loss=jnp.where(active, loss, c.last_loss),
            last_norm=jnp.where(active, norm, c.last_norm),
            loss_rose=rose,
        )

    def body(c):
        # A few masked steps per iteration amortise the loop's own cost, which dominates
        # the O(mk) reduced step (a dynamics whose step is costly asks for fewer; callers
        # may override it).
        for _ in range(dynamics.unroll if unroll is None else unroll):
            c = substep(c)
        return c

    return jax.lax.while_loop(cond, body, carry)


def descent_result(
    carry: DescentState,
    *,
    threshold: Thresholds,
    horizon: Int[Array, ""],
    stop: AbstractStopRule | None,
) -> RESULTS:
    """The result code of a stopped run, read off the loss and parameter norm it stopped at
    (same precedence as the checks: NaN, divergence, the stop rule, the horizon)."""
    nonfinite, diverged, converged, at_horizon = _discrete_flags(
        carry.last_loss, carry.last_norm, carry.step, threshold, horizon, stop
    )
    end_code = RESULTS.max_steps_reached if stop is not None else RESULTS.successful
    code = RESULTS.where(at_horizon, end_code, RESULTS.successful)
    code = RESULTS.where(converged, RESULTS.converged, code)
    code = RESULTS.where(diverged, RESULTS.diverged, code)
    code = RESULTS.where(nonfinite, RESULTS.non_finite, code)
    if stop is not None:
        code = RESULTS.where(stop.unreachable(), RESULTS.unreachable, code)
    return code


@eqx.filter_jit
def solve_descent(
    objective: Objective,
    dynamics: AbstractDiscreteDynamics,
    *,
    save_steps: Int[Array, " T"],
    horizon: Int[Array, ""],
    stop: AbstractStopRule | None = None,
    diverge_factor: float = DIVERGE_FACTOR,
    param_factor: float = PARAM_FACTOR,
    save_params: bool = False,
    save_signal: bool = False,
    unroll: int | None = None,
) -> Trajectory:
    """The traced solve of a discrete dynamics: steps to `horizon` (or the stop), saving at
    the steps `save_steps` (no validation: [`flowdip.solve`][] does it)."""
    dtype = objective.dtype
    T = save_steps.shape[0]
    start = descent_start(
        objective,
        dynamics,
        diverge_factor=diverge_factor,
        param_factor=param_factor,
        step_dtype=save_steps.dtype,
        stop=stop,
    )
    threshold = start.threshold
    theta0 = objective.initial_state()
    nan = jnp.full((), jnp.nan, dtype)
    shapes = jax.eval_shape(lambda: _stats(objective, theta0, save_params, save_signal))
    buffers = (jnp.full((T,), nan),) + jax.tree_util.tree_map(
        lambda s: jnp.full((T,) + s.shape, nan), shapes
    )

    # The hot loop only steps and checks the stop rules; saves happen between segments, so
    # that no per-step branch (a select under vmap) evaluates the save statistics.
    def run_to(target, carry):
        return descent_run_to(
            objective,
            dynamics,
            carry,
            target,
            stop=stop,
            threshold=threshold,
            horizon=horizon,
            unroll=unroll,
        )

    def segment(i, c):
        carry, bufs = c
        carry = run_to(save_steps[i], carry)
        save_now = ~carry.done & (carry.step == save_steps[i])

        def write(b):
            theta = dynamics.parameters(carry.state)
            row = (objective.value(theta),) + _stats(objective, theta, save_params, save_signal)
            return jax.tree_util.tree_map(lambda buf, v: buf.at[i].set(v), b, row)

        return carry, jax.lax.cond(save_now, write, lambda b: b, bufs)

    carry, bufs = jax.lax.fori_loop(0, T, segment, (start.state, buffers))
    carry = run_to(horizon + 1, carry)
    tau, state, loss = carry.step, carry.state, carry.last_loss
    code = descent_result(carry, threshold=threshold, horizon=horizon, stop=stop)
    theta = dynamics.parameters(state)
    loss_s, rec, disp, params, signal = bufs
    valid = save_steps <= tau
    eta = dynamics.step_size.astype(dtype)
    return Trajectory(
        ts=save_steps.astype(dtype) * eta,
        steps=save_steps,
        valid=valid,
        loss=loss_s,
        recovery_error=rec,
        displacement=disp,
        params=params,
        signal=signal,
        final_state=state,
        final_generator=objective.lift(theta),
        final_signal=objective.signal(theta),
        final_loss=loss,
        initial_loss=start.initial_loss,
        stop_time=tau.astype(dtype) * eta,
        horizon=horizon.astype(dtype) * eta,
        num_steps=tau,
        result=code,
        dynamics=dynamics,
        loss_rose=carry.loss_rose,
    )


def _unreachable(code: RESULTS, stop: AbstractStopRule | None) -> RESULTS:
    if stop is None:
        return code
    return RESULTS.where(stop.unreachable(), RESULTS.unreachable, code)


@eqx.filter_jit
def solve_flow(
    objective: Objective,
    dynamics: AbstractFlow,
    *,
    ts: Float[Array, " T"],
    t1: Float[Array, ""],
    stop: AbstractStopRule | None = None,
    save_params: bool = False,
    save_signal: bool = False,
) -> Trajectory:
    """The traced solve of a flow: integrates to `t1` (or the stop's crossing time), saving at
    the times `ts` (no validation: [`flowdip.solve`][] does it). One segment of the whole
    budget: [`flow_start`][], [`flow_run_to`][] and [`flow_result`][] in one piece."""
    dtype = objective.dtype
    theta0 = objective.initial_state()
    loss0 = objective.value(theta0)

    def save_fn(t, y, args):
        theta = dynamics.parameters(y)
        return (objective.value(theta),) + _stats(objective, theta, save_params, save_signal)

    start = flow_start(objective, dynamics, t1=t1)
    save_ts = ts
    if stop is not None:
        # A certified-unreachable stop rule ends the run before its first step; its saves
        # (all but t = 0 invalid below) are moved into the empty interval it integrates.
        dead = stop.unreachable()
        start = eqx.tree_at(lambda c: c.done, start, start.done | dead)
        save_ts = jnp.where(dead, jnp.zeros_like(ts), ts)
    carry, (saved_ts, saved) = _flow_segment(
        objective,
        dynamics,
        start,
        jnp.asarray(dynamics.max_steps, jnp.int32),
        t1=t1,
        stop=stop,
        segment=dynamics.max_steps,
        saves=dfx.SubSaveAt(ts=save_ts, fn=save_fn),
    )
    stop_time = carry.t
    theta = dynamics.parameters(carry.y)
    final_loss = objective.value(theta)
    valid = jnp.isfinite(saved_ts) & (ts <= stop_time)
    saved = jax.tree_util.tree_map(lambda a: _nan_where(valid, a), saved)
    loss_s, rec, disp, params, signal = saved
    return Trajectory(
        ts=ts,
        steps=jnp.full(ts.shape, -1, jnp.int32),
        valid=valid,
        loss=loss_s,
        recovery_error=rec,
        displacement=disp,
        params=params,
        signal=signal,
        final_state=carry.y,
        final_generator=objective.lift(theta),
        final_signal=objective.signal(theta),
        final_loss=final_loss,
        initial_loss=loss0,
        stop_time=stop_time.astype(dtype),
        horizon=t1,
        num_steps=carry.num_accepted,
        result=_unreachable(flow_result(carry, final_loss, stop=stop), stop),
        dynamics=dynamics,
    )
