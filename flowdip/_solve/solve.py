"""`solve`: runs one dynamics on one objective and records a `Trajectory`."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._dynamics import (
    AbstractDiscreteDynamics,
    AbstractDynamics,
    AbstractFlow,
    AbstractStopRule,
)
from .._objective import Objective
from .._typing import Array, check_int, check_real, checked, Float, is_concrete, Size
from .loop import DIVERGE_FACTOR, PARAM_FACTOR, solve_descent, solve_flow
from .trajectory import RESULTS, Trajectory


class SolveError(RuntimeError):
    """Raised by `solve(..., throw=True)` for a failed run; `.trajectory` holds what was run."""

    def __init__(self, message: str, trajectory: Trajectory):
        super().__init__(message)
        self.trajectory = trajectory


def _nonneg_int(name, value):
    return check_int(name, value, 0)


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
    if bool(r == RESULTS.unreachable):  # an answer the stop rule was asked for
        return None
    if bool(r == RESULTS.max_steps_reached) and stop is not None:
        return None
    kind = traj.dynamics.label()
    where = f"at step {int(traj.num_steps)} (t = {float(traj.stop_time):.6g})"
    if bool(r == RESULTS.diverged):
        theta = traj.dynamics.parameters(traj.final_state)
        leaves = jax.tree_util.tree_leaves(theta)
        norm = float(jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in leaves)))
        return (
            f"{kind} diverged {where}: the loss reached {float(traj.final_loss):.3e} from "
            f"{float(traj.initial_loss):.3e} at the start, and the parameter norm "
            f"{norm:.3e}. {RESULTS[r]}"
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
    num_steps: Size | None = None,
    ts: Float[Array, " T"] | np.ndarray | list | None = None,
    num_saves: Size = 201,
    stop: AbstractStopRule | None = None,
    save_params: bool = True,
    save_signal: bool = False,
    diverge_factor: float = DIVERGE_FACTOR,
    param_factor: float = PARAM_FACTOR,
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
      `diverge_factor · max(F(θ₀), 1)` (default `10⁶`).
    - `param_factor`: a descent is also `diverged` once its parameters are non-finite or
      their norm exceeds `param_factor · max(‖θ₀‖, 1)` (default `10³`; `θ` is the state
      the dynamics moves, `z = W u` on the reduced path). With a saturating activation (the
      sigmoid) the loss stays bounded while the parameters blow up; a catapult, which grows
      them a few times before converging, stays far below.
    - `throw`: raise [`flowdip.SolveError`][] if the run failed (diverged, NaN, solver failure,
      or the horizon not reached when no stop rule was given). With `throw=False` failures
      are recorded in `Trajectory.result`; batched runs should use it.

    **Returns:** a [`flowdip.Trajectory`][].
    """
    for name, factor in (("diverge_factor", diverge_factor), ("param_factor", param_factor)):
        if isinstance(factor, bool) or not isinstance(factor, int | float | np.number):
            raise TypeError(f"{name} must be a number > 1; got {name}={factor!r}.")
        if not (math.isfinite(factor) and factor > 1):
            raise ValueError(f"{name} must be a finite number > 1; got {name}={factor}.")
    num_saves = check_int("num_saves", num_saves)
    if not isinstance(objective, Objective):
        raise TypeError(f"objective must be a flowdip.Objective; got {type(objective).__name__}.")
    if stop is not None and not isinstance(stop, AbstractStopRule):
        raise TypeError(f"stop must be a stop rule such as flowdip.LossBelow; got stop={stop!r}.")
    if t1 is not None and not (math.isfinite(check_real("t1", t1)) and t1 >= 0):
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
        traj = solve_descent(
            objective,
            dynamics,
            save_steps=jnp.asarray(steps, jnp.int32),
            horizon=jnp.asarray(horizon, jnp.int32),
            stop=stop,
            diverge_factor=float(diverge_factor),
            param_factor=float(param_factor),
            save_params=save_params,
            save_signal=save_signal,
        )
    elif isinstance(dynamics, AbstractFlow):
        if num_steps is not None:
            raise ValueError("Flows are run to a time: pass t1=… instead of num_steps.")
        if t1 is None:
            raise ValueError("A flow needs a time horizon: pass t1=….")
        if dynamics.needs_float64 and objective.dtype != jnp.float64:
            raise ValueError(
                f"This flow needs float64 (its tolerances, rtol={dynamics.rtol}, are below "
                "float32 resolution, or it is the stiff flow, whose implicit stages are solved "
                f"in float64), but the objective is {objective.dtype}. Call "
                "jax.config.update('jax_enable_x64', True) before creating arrays, or loosen "
                "the tolerances of an explicit flow."
            )
        times = np.linspace(0.0, t1, num_saves) if ts is None else _check_times(ts, t1)
        traj = solve_flow(
            objective,
            dynamics,
            ts=jnp.asarray(times, objective.dtype),
            t1=jnp.asarray(t1, objective.dtype),
            stop=stop,
            save_params=save_params,
            save_signal=save_signal,
        )
    else:
        raise TypeError(f"dynamics must be a flowdip dynamics; got dynamics={dynamics!r}.")

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


def horizon_of(
    dynamics: AbstractDynamics, *, num_steps: int | None = None, t1: float | None = None
) -> int | float:
    """The horizon of a batched run: a step count for a discrete dynamics (from `num_steps`),
    a time for a flow (from `t1`), as `solve_to` takes it."""
    if isinstance(dynamics, AbstractDiscreteDynamics):
        if num_steps is None:
            raise ValueError("A discrete dynamics needs num_steps=….")
        return _nonneg_int("num_steps", num_steps)
    if isinstance(dynamics, AbstractFlow):
        if t1 is None:
            raise ValueError("A flow needs t1=….")
        if not (math.isfinite(t1) and t1 >= 0):
            raise ValueError(f"t1 must be a finite time >= 0; got t1={t1}.")
        return float(t1)
    raise TypeError(f"dynamics must be a flowdip dynamics; got dynamics={dynamics!r}.")


def solve_to(
    objective: Objective, dynamics: AbstractDynamics, horizon: int | float, **kwargs
) -> Trajectory:
    """[`flowdip.solve`][] to a horizon as `horizon_of` gives it (steps for a
    discrete dynamics, time for a flow), for callers that batch any kind of dynamics (the
    step size may then be traced)."""
    if isinstance(dynamics, AbstractDiscreteDynamics):
        return solve(objective, dynamics, num_steps=horizon, **kwargs)
    return solve(objective, dynamics, t1=horizon, **kwargs)
