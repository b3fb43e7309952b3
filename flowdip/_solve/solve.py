"""`solve`: runs one dynamics on one objective and records a `Trajectory`."""

import math

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from .._dynamics.dynamics import (
    AbstractDiscreteDynamics,
    AbstractDynamics,
    AbstractFlow,
    AbstractStopRule,
)
from .._objective import Objective
from .._typing import Array, checked, Float, Int, is_concrete, PyTree
from .trajectory import RESULTS, Trajectory


class SolveError(RuntimeError):
    """Raised by `solve(..., throw=True)` for a failed run; `.trajectory` holds what was run."""

    def __init__(self, message: str, trajectory: Trajectory):
        super().__init__(message)
        self.trajectory = trajectory


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


def _discrete_start(objective, dynamics, tau0, diverge_factor):
    """The stepping loop's initial carry `(τ, state, done, last loss, rose)`, `F(θ₀)` and the
    divergence threshold."""
    theta0 = objective.initial_state()
    state0 = dynamics.initial_state(objective, theta0)
    loss0 = objective.value(theta0)
    threshold = diverge_factor * jnp.maximum(loss0, 1)
    carry = (jnp.zeros_like(tau0), state0, jnp.array(False), loss0, jnp.array(False))
    return carry, loss0, threshold


def _discrete_flags(loss, tau, threshold, horizon, stop):
    nonfinite = jnp.isnan(loss)
    diverged = ~nonfinite & (loss > threshold)
    converged = stop.met(loss) if stop is not None else jnp.array(False)
    return nonfinite, diverged, converged, tau >= horizon


def _discrete_run_to(objective, dynamics, stop, threshold, horizon, unroll, target, carry):
    """Steps the carry until it stops or reaches step `target`.

    Each step is masked on its own, so running to `a` and then to `b` is step for step the
    same as running to `b` (what lets a batched sweep stop, compact and resume its runs).
    """

    def cond(c):
        tau, _, done, _, _ = c
        return ~done & (tau < target)

    def substep(c):
        tau, state, done, last, rose = c
        active = ~done & (tau < target)
        loss, new_state = dynamics.step(objective, state)
        # `loss` is F(θ_τ) and `last` F(θ_{τ−1}) (F(θ₀) itself on the first step).
        rose = rose | (active & (loss > (1 + _RISE_RTOL) * last))
        nonfinite, diverged, converged, at_horizon = _discrete_flags(
            loss, tau, threshold, horizon, stop
        )
        stop_now = active & (nonfinite | diverged | converged | at_horizon)
        advance = active & ~stop_now
        state = jax.tree_util.tree_map(lambda a, b: jnp.where(advance, a, b), new_state, state)
        tau = tau + advance.astype(tau.dtype)
        return tau, state, done | stop_now, jnp.where(active, loss, last), rose

    def body(c):
        # A few masked steps per iteration amortise the loop's own cost, which dominates
        # the O(mk) reduced step (a dynamics whose step is costly asks for fewer; callers
        # may override it).
        for _ in range(dynamics.unroll if unroll is None else unroll):
            c = substep(c)
        return c

    return jax.lax.while_loop(cond, body, carry)


def _discrete_result(loss, tau, threshold, horizon, stop):
    """The result code of a stopped run, read off the loss it stopped at (same precedence as
    the checks: NaN, divergence, the stop rule, the horizon)."""
    nonfinite, diverged, converged, at_horizon = _discrete_flags(
        loss, tau, threshold, horizon, stop
    )
    end_code = RESULTS.max_steps_reached if stop is not None else RESULTS.successful
    code = RESULTS.where(at_horizon, end_code, RESULTS.successful)
    code = RESULTS.where(converged, RESULTS.converged, code)
    code = RESULTS.where(diverged, RESULTS.diverged, code)
    return RESULTS.where(nonfinite, RESULTS.non_finite, code)


@eqx.filter_jit
def _solve_discrete(
    objective: Objective,
    dynamics: AbstractDiscreteDynamics,
    save_steps: Int[Array, " T"],
    horizon: Int[Array, ""],
    stop: AbstractStopRule | None,
    diverge_factor: float,
    save_params: bool,
    save_signal: bool,
    unroll: int | None = None,
) -> Trajectory:
    dtype = objective.dtype
    T = save_steps.shape[0]
    carry, loss0, threshold = _discrete_start(objective, dynamics, save_steps[0], diverge_factor)
    theta0 = objective.initial_state()
    nan = jnp.full((), jnp.nan, dtype)
    shapes = jax.eval_shape(lambda: _stats(objective, theta0, save_params, save_signal))
    buffers = (jnp.full((T,), nan),) + jax.tree_util.tree_map(
        lambda s: jnp.full((T,) + s.shape, nan), shapes
    )

    # The hot loop only steps and checks the stop rules; saves happen between segments, so
    # that no per-step branch (a select under vmap) evaluates the save statistics.
    def run_to(target, carry):
        return _discrete_run_to(
            objective, dynamics, stop, threshold, horizon, unroll, target, carry
        )

    def segment(i, c):
        carry, bufs = c
        carry = run_to(save_steps[i], carry)
        tau, state, done, _, _ = carry
        save_now = ~done & (tau == save_steps[i])

        def write(b):
            theta = dynamics.parameters(state)
            row = (objective.value(theta),) + _stats(objective, theta, save_params, save_signal)
            return jax.tree_util.tree_map(lambda buf, v: buf.at[i].set(v), b, row)

        return carry, jax.lax.cond(save_now, write, lambda b: b, bufs)

    carry, bufs = jax.lax.fori_loop(0, T, segment, (carry, buffers))
    tau, state, _, loss, rose = run_to(horizon + 1, carry)
    code = _discrete_result(loss, tau, threshold, horizon, stop)
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
        initial_loss=loss0,
        stop_time=tau.astype(dtype) * eta,
        horizon=horizon.astype(dtype) * eta,
        num_steps=tau,
        result=code,
        dynamics=dynamics,
        loss_rose=rose,
    )


@eqx.filter_jit
def _solve_flow(
    objective: Objective,
    dynamics: AbstractFlow,
    ts: Float[Array, " T"],
    t1: Float[Array, ""],
    stop: AbstractStopRule | None,
    save_params: bool,
    save_signal: bool,
) -> Trajectory:
    dtype = objective.dtype
    theta0 = objective.initial_state()
    y0 = dynamics.initial_state(objective, theta0)
    loss0 = objective.value(theta0)

    def save_fn(t, y, args):
        theta = dynamics.parameters(y)
        return (objective.value(theta),) + _stats(objective, theta, save_params, save_signal)

    saveat = dfx.SaveAt(subs=[dfx.SubSaveAt(ts=ts, fn=save_fn), dfx.SubSaveAt(t1=True)])
    event = None
    if stop is not None:

        def cond_fn(t, y, args, **kwargs):
            return stop.residual(objective.value(dynamics.parameters(y)))

        # Bisection on the step that crossed: always bracketed, unlike Newton, which can stall
        # on the dense interpolant of a long step.
        tol = 1e3 * float(jnp.finfo(dtype).eps)
        # `flip=True` (the residual falls across the step) rather than detected: under vmap,
        # Diffrax root-finds every run once one run's event fires, and a run without an event
        # gets the residual `t_end − t`, which is zero at the upper end; detection then fails
        # with "The root is not contained in [lower, upper]" and kills the whole batch.
        bisection = optx.Bisection(rtol=tol, atol=tol, flip=True)
        event = dfx.Event(cond_fn, root_finder=bisection)
    sol = dfx.diffeqsolve(
        dfx.ODETerm(dynamics.vector_field(objective)),
        dynamics.solver,
        t0=jnp.zeros((), dtype),
        t1=t1,
        dt0=None,
        y0=y0,
        saveat=saveat,
        stepsize_controller=dynamics.controller(),
        max_steps=dynamics.max_steps,
        event=event,
        throw=False,
    )
    saved_ts, final_ts = sol.ts
    saved, final_y = sol.ys
    stop_time = final_ts[-1]
    y_end = jax.tree_util.tree_map(lambda a: a[-1], final_y)
    theta = dynamics.parameters(y_end)
    final_loss = objective.value(theta)
    valid = jnp.isfinite(saved_ts) & (ts <= stop_time)
    saved = jax.tree_util.tree_map(lambda a: _nan_where(valid, a), saved)
    loss_s, rec, disp, params, signal = saved

    finished = (sol.result == dfx.RESULTS.successful) | (sol.result == dfx.RESULTS.event_occurred)
    code = RESULTS.promote(sol.result)
    if stop is not None:
        met = stop.met(final_loss) | jnp.any(jnp.asarray(sol.event_mask))
        done_code = RESULTS.where(met, RESULTS.converged, RESULTS.max_steps_reached)
    else:
        done_code = RESULTS.successful
    code = RESULTS.where(finished, done_code, code)
    code = RESULTS.where(jnp.isnan(final_loss), RESULTS.non_finite, code)
    return Trajectory(
        ts=ts,
        steps=jnp.full(ts.shape, -1, jnp.int32),
        valid=valid,
        loss=loss_s,
        recovery_error=rec,
        displacement=disp,
        params=params,
        signal=signal,
        final_state=y_end,
        final_generator=objective.lift(theta),
        final_signal=objective.signal(theta),
        final_loss=final_loss,
        initial_loss=loss0,
        stop_time=stop_time,
        horizon=t1,
        num_steps=jnp.asarray(sol.stats["num_accepted_steps"], jnp.int32),
        result=code,
        dynamics=dynamics,
    )


def _nonneg_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0; got {name}={value!r}.")
    return int(value)


def _check_times(ts, t1) -> np.ndarray:
    ts = np.asarray(ts, dtype=np.float64)
    if ts.ndim != 1 or ts.size == 0:
        raise ValueError(f"ts must be a non-empty 1-d array of times; got shape {ts.shape}.")
    if not np.all(np.isfinite(ts)):
        raise ValueError("ts contains non-finite times.")
    if np.any(np.diff(ts) <= 0):
        raise ValueError("ts must be strictly increasing.")
    if ts[0] < 0 or ts[-1] > t1 * (1 + 1e-12):
        raise ValueError(f"ts must lie in [0, t1] = [0, {t1}]; got [{ts[0]}, {ts[-1]}].")
    return ts


def _describe_failure(traj: Trajectory, stop) -> str | None:
    r = traj.result
    if bool(r == RESULTS.successful) or bool(r == RESULTS.converged):
        return None
    if bool(r == RESULTS.max_steps_reached) and stop is not None:
        return None
    kind = "gradient descent" if isinstance(traj.dynamics, AbstractDiscreteDynamics) else "flow"
    where = f"at step {int(traj.num_steps)} (t = {float(traj.stop_time):.6g})"
    if bool(r == RESULTS.diverged):
        return (
            f"{kind} diverged {where}: the loss reached {float(traj.final_loss):.3e} from "
            f"{float(traj.initial_loss):.3e} at the start. {RESULTS[r]}"
        )
    if bool(r == RESULTS.non_finite):
        return f"{kind} produced a NaN loss {where}. {RESULTS[r]}"
    return f"{kind} failed {where}: {RESULTS[r]}"


@checked
def solve(
    objective: Objective,
    dynamics: AbstractDynamics,
    *,
    t1: float | None = None,
    num_steps: int | None = None,
    ts: Float[Array, " T"] | np.ndarray | list | None = None,
    num_saves: int = 201,
    stop: AbstractStopRule | None = None,
    save_params: bool = True,
    save_signal: bool = False,
    diverge_factor: float = 1e6,
    throw: bool = True,
) -> Trajectory:
    """Runs `dynamics` on `objective` from the generator's parameters `θ₀`.

    **Arguments:**

    - `objective`: the [`flowdip.Objective`][].
    - `dynamics`: a flow (e.g. [`flowdip.GradientFlow`][]) or a discrete dynamics (e.g.
      [`flowdip.GradientDescent`][]).
    - `t1`: the time horizon. Required for flows; for descent it means `round(t1/η)` steps.
    - `num_steps`: the step cap of a discrete dynamics (alternative to `t1`).
    - `ts`: save times (default: `num_saves` evenly spaced times in `[0, t1]`). For descent
      they are rounded to steps `τ` and saved at the exact times `τη`.
    - `stop`: a stop rule such as [`flowdip.LossBelow`][].
    - `save_params`: save `θ − θ₀` at each save time (needed for parameter gaps).
    - `save_signal`: save the signal `x` at each save time.
    - `diverge_factor`: a descent is `diverged` once its loss exceeds
      `diverge_factor · max(F(θ₀), 1)`.
    - `throw`: raise [`flowdip.SolveError`][] if the run failed (diverged, NaN, solver failure,
      or the horizon not reached when no stop rule was given). With `throw=False` failures
      are recorded in `Trajectory.result`; batched runs should use it.

    **Returns:** a [`flowdip.Trajectory`][].
    """
    if not (math.isfinite(diverge_factor) and diverge_factor > 1):
        raise ValueError(f"diverge_factor must be > 1; got {diverge_factor}.")
    if isinstance(num_saves, bool) or num_saves < 1:
        raise ValueError(f"num_saves must be >= 1; got {num_saves}.")
    if t1 is not None and not (math.isfinite(t1) and t1 >= 0):
        raise ValueError(f"t1 must be a finite time >= 0; got t1={t1}.")
    if isinstance(dynamics, AbstractDiscreteDynamics):
        traced_eta = not is_concrete(dynamics.step_size)
        if num_steps is not None:
            horizon = _nonneg_int("num_steps", num_steps)
            if t1 is not None and not traced_eta:
                implied = t1 / float(dynamics.step_size)
                if abs(implied - horizon) > 1e-9 * max(1.0, implied):
                    raise ValueError(
                        f"t1={t1} and num_steps={num_steps} disagree for step size "
                        f"{float(dynamics.step_size)}; give one of them."
                    )
        elif t1 is not None:
            if traced_eta:
                raise ValueError("With a traced step size, give num_steps rather than t1.")
            horizon = int(round(t1 / float(dynamics.step_size)))
        else:
            raise ValueError("Gradient descent needs a horizon: pass num_steps=… or t1=….")
        if ts is None:
            steps = np.unique(np.round(np.linspace(0, horizon, num_saves)).astype(np.int64))
        else:
            if traced_eta:
                raise ValueError("With a traced step size, ts cannot be converted to steps.")
            eta = float(dynamics.step_size)
            times = _check_times(ts, horizon * eta)
            steps = np.round(times / eta).astype(np.int64)
            if np.any(np.diff(steps) <= 0):
                raise ValueError(
                    f"Two save times in ts round to the same step for step size {eta}; "
                    "space them at least one step apart."
                )
        traj = _solve_discrete(
            objective,
            dynamics,
            jnp.asarray(steps, jnp.int32),
            jnp.asarray(horizon, jnp.int32),
            stop,
            float(diverge_factor),
            save_params,
            save_signal,
        )
    elif isinstance(dynamics, AbstractFlow):
        if num_steps is not None:
            raise ValueError("Flows are run to a time: pass t1=… instead of num_steps.")
        if t1 is None:
            raise ValueError("A flow needs a time horizon: pass t1=….")
        if getattr(dynamics, "needs_float64", False) and objective.dtype != jnp.float64:
            raise ValueError(
                f"This flow's tolerances (rtol={dynamics.rtol}) need float64, but the objective "
                f"is {objective.dtype}. Call jax.config.update('jax_enable_x64', True) before "
                "creating arrays, or loosen the tolerances."
            )
        times = np.linspace(0.0, t1, num_saves) if ts is None else _check_times(ts, t1)
        traj = _solve_flow(
            objective,
            dynamics,
            jnp.asarray(times, objective.dtype),
            jnp.asarray(t1, objective.dtype),
            stop,
            save_params,
            save_signal,
        )
    else:
        raise TypeError(f"Unknown dynamics {type(dynamics).__name__}.")

    if throw:
        if is_concrete(traj.result):
            message = _describe_failure(traj, stop)
            if message is not None:
                raise SolveError(message + " Pass throw=False to get the trajectory instead.", traj)
        else:
            ok = (traj.result == RESULTS.successful) | (traj.result == RESULTS.converged)
            if stop is not None:
                ok = ok | (traj.result == RESULTS.max_steps_reached)
            traj = eqx.error_if(
                traj,
                ~ok,
                "A run failed; use throw=False in batched runs and read Trajectory.result.",
            )
    return traj
