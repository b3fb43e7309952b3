"""A flow's Diffrax solve in segments: a typed carry [`FlowState`][] that holds what Diffrax's
integration loop holds between two steps, so that a solve can stop after any number of solver
steps and resume with the same steps it would have taken in one piece.

Diffrax resumes a solve from a solver state and a controller state (`SaveAt(solver_state=True,
controller_state=True)`), but its `Solution` gives neither the end of the next step to try nor,
under `vmap`, the state of a run without an event when another run's event fired (Diffrax then
root-finds every run and interpolates them all). The flow's step-size controller is therefore
wrapped in a recorder that keeps, in its own state, the loop's `y`, `tprev` and `tnext` after
every step, computed exactly as the loop computes them; the recorder also ends a run on its
own step budget, which a batched solve cannot pass Diffrax per run.
"""

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import optimistix as optx
from diffrax._term import WrapTerm  # not exported; see flow_start

from .._dynamics import AbstractFlow, AbstractStopRule
from .._objective import Objective
from .._typing import Array, Bool, Float, Int, PyTree
from .trajectory import RESULTS


class FlowState(eqx.Module):
    """The carry of a flow's segmented solve (one run).

    **Fields:** `t` (the time reached: the end of the last accepted step, or the stop rule's
    crossing time once located), `y` (the ODE state at `t`), `tnext` (the end of the next step
    to try), `solver_state`, `controller_state` and `made_jump` (Diffrax's state between two
    steps), `num_steps` (solver steps taken, accepted and rejected: what the flow's `max_steps`
    caps), `num_accepted` (the accepted ones), `done` (the run has stopped), `result` (Diffrax's
    outcome once stopped, `successful` while running) and `event` (the stop rule's crossing was
    located).
    """

    t: Float[Array, ""]
    y: PyTree
    tnext: Float[Array, ""]
    solver_state: PyTree
    controller_state: PyTree
    made_jump: Bool[Array, ""]
    num_steps: Int[Array, ""]
    num_accepted: Int[Array, ""]
    done: Bool[Array, ""]
    result: RESULTS
    event: Bool[Array, ""]


class _Record(eqx.Module):
    inner: PyTree
    y: PyTree
    tprev: Array
    tnext: Array
    count: Array


def _clip_floor(t1):
    # As Diffrax's loop: a step ending within 100 ULP of `t1` is snapped onto it.
    floor = t1
    for _ in range(100):
        floor = jnp.where(floor == 0, -jnp.finfo(floor.dtype).tiny, jnp.nextafter(floor, -jnp.inf))
    return floor


class _Recorder(dfx.AbstractAdaptiveStepSizeController):
    """The flow's controller, recording the loop's state after each step and ending the solve
    after `steps_left` steps (with `max_steps_reached`, which the caller reads back); resumed,
    its first step ends at `tnext`."""

    controller: dfx.AbstractAdaptiveStepSizeController
    t1: Array
    floor: Array
    tnext: Array
    steps_left: Array

    # Diffrax hands these tolerances to an implicit solver's root finder, as for the flow's own.
    @property
    def rtol(self):
        return self.controller.rtol

    @property
    def atol(self):
        return self.controller.atol

    @property
    def norm(self):
        return self.controller.norm

    def wrap(self, direction):
        return eqx.tree_at(lambda r: r.controller, self, self.controller.wrap(direction))

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        # Only ever called with a controller state passed in, which Diffrax then keeps.
        return self.tnext, None

    def adapt_step_size(self, t0, t1, y0, y1_candidate, args, y_error, error_order, state):
        keep, next_t0, next_t1, jump, inner, result = self.controller.adapt_step_size(
            t0, t1, y0, y1_candidate, args, y_error, error_order, state.inner
        )
        # Exactly the loop's own book-keeping after a step (diffrax/_integrate.py).
        y = jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), y1_candidate, y0)
        tprev = jnp.minimum(next_t0, self.t1)
        clip = next_t1 > self.floor
        tclip = jnp.where(keep, self.t1, tprev + 0.5 * (self.t1 - tprev))
        tnext = jnp.where(clip, tclip, next_t1)
        count = state.count + 1
        over = (count >= self.steps_left) & (result == dfx.RESULTS.successful)
        result = dfx.RESULTS.where(over, dfx.RESULTS.max_steps_reached, result)
        return keep, next_t0, next_t1, jump, _Record(inner, y, tprev, tnext, count), result


def _terms(objective: Objective, dynamics: AbstractFlow):
    return dfx.ODETerm(dynamics.vector_field(objective))


def flow_start(
    objective: Objective, dynamics: AbstractFlow, *, t1: Float[Array, ""] | float
) -> FlowState:
    """A flow's carry at `t = 0`: `y₀` from the generator's parameters, the first step and
    the controller and solver states, exactly as `diffrax.diffeqsolve` starts them."""
    dtype = objective.dtype
    t0 = jnp.zeros((), dtype)
    t1 = jnp.asarray(t1, dtype)
    y0 = dynamics.initial_state(objective, objective.initial_state())
    solver = dynamics.solver_for(objective)
    # Diffrax starts a solve on its terms wrapped for the direction of time, and the wrapped
    # term is what the controller's first-step heuristic sees (for a PID controller, a
    # wrapped ODE term gets the first step 0.01): start on the same terms.
    direction = jnp.where(t0 < t1, 1, -1)
    terms = WrapTerm(_terms(objective, dynamics), direction)
    controller = dynamics.controller().wrap(direction)
    s0, s1 = t0 * direction, t1 * direction
    tnext, controller_state = controller.init(
        terms, s0, s1, y0, None, None, solver.func, solver.error_order(terms)
    )
    tnext = jnp.minimum(tnext, s1)
    return FlowState(
        t=t0,
        y=y0,
        tnext=tnext,
        solver_state=solver.init(terms, s0, tnext, y0, None),
        controller_state=controller_state,
        made_jump=jnp.array(False),
        num_steps=jnp.zeros((), jnp.int32),
        num_accepted=jnp.zeros((), jnp.int32),
        done=jnp.array(False),
        result=RESULTS.successful,
        event=jnp.array(False),
    )


def _stop_event(objective: Objective, dynamics: AbstractFlow, stop: AbstractStopRule | None):
    if stop is None:
        return None

    def cond_fn(t, y, args, **kwargs):
        return stop.residual(objective.value(dynamics.parameters(y)))

    # Bisection on the step that crossed: always bracketed, unlike Newton, which can stall
    # on the dense interpolant of a long step.
    tol = 1e3 * float(jnp.finfo(objective.dtype).eps)
    # `flip=True` (the residual falls across the step) rather than detected: under vmap,
    # Diffrax root-finds every run once one run's event fires, and a run without an event
    # gets the residual `t_end − t`, which is zero at the upper end; detection then fails
    # with "The root is not contained in [lower, upper]" and kills the whole batch.
    bisection = optx.Bisection(rtol=tol, atol=tol, flip=True)
    return dfx.Event(cond_fn, root_finder=bisection)


def _flow_segment(
    objective: Objective,
    dynamics: AbstractFlow,
    carry: FlowState,
    target: Int[Array, ""],
    *,
    t1: Float[Array, ""],
    stop: AbstractStopRule | None,
    segment: int,
    saves: dfx.SubSaveAt | None = None,
) -> tuple[FlowState, PyTree]:
    """[`flow_run_to`][] that also saves as `saves` says (what a one-piece solve saves along
    the way), returning the new carry and Diffrax's `(ts, ys)` of `saves` (or `None`)."""
    t1 = jnp.asarray(t1, objective.dtype)
    budget = jnp.minimum(jnp.asarray(target, jnp.int32), dynamics.max_steps)
    left = budget - carry.num_steps
    active = ~carry.done & (left > 0)
    # A run that takes no step here integrates over an empty interval.
    end = jnp.where(active, t1, carry.t)
    recorder = _Recorder(dynamics.controller(), end, _clip_floor(end), carry.tnext, left)
    subs = [dfx.SubSaveAt(t1=True)] + ([] if saves is None else [saves])
    count = jnp.zeros((), jnp.int32)
    record = _Record(carry.controller_state, carry.y, carry.t, carry.tnext, count)
    sol = dfx.diffeqsolve(
        _terms(objective, dynamics),
        dynamics.solver_for(objective),
        t0=carry.t,
        t1=end,
        dt0=None,
        y0=carry.y,
        saveat=dfx.SaveAt(subs=subs, solver_state=True, controller_state=True, made_jump=True),
        stepsize_controller=recorder,
        max_steps=segment,
        event=_stop_event(objective, dynamics, stop),
        throw=False,
        solver_state=carry.solver_state,
        controller_state=record,
        made_jump=carry.made_jump,
    )
    rec = sol.controller_state
    event = jnp.array(False) if stop is None else jnp.any(jnp.asarray(sol.event_mask))
    num_steps = carry.num_steps + jnp.asarray(sol.stats["num_steps"], jnp.int32)
    # `max_steps_reached` is a segment's end (Diffrax's `max_steps` or the recorder's count):
    # the run goes on unless its budget is spent or the step that ended it reached `t1`.
    counted = sol.result == dfx.RESULTS.max_steps_reached
    at_end = ~(rec.tprev < end)
    result = dfx.RESULTS.where(counted & at_end, dfx.RESULTS.successful, sol.result)
    done = ~counted | at_end | (num_steps >= dynamics.max_steps)
    result = dfx.RESULTS.where(done, result, dfx.RESULTS.successful)
    # A located crossing ends the run at Diffrax's root; any other run at the loop's own state
    # (Diffrax's output for it is an interpolant whenever a batch mate's event fired).
    t_end, y_end = sol.ts[0][-1], jax.tree_util.tree_map(lambda a: a[-1], sol.ys[0])
    new = FlowState(
        t=jnp.where(event, t_end, rec.tprev),
        y=jax.tree_util.tree_map(lambda a, b: jnp.where(event, a, b), y_end, rec.y),
        tnext=rec.tnext,
        solver_state=sol.solver_state,
        controller_state=rec.inner,
        made_jump=jnp.asarray(sol.made_jump),
        num_steps=num_steps,
        num_accepted=carry.num_accepted + jnp.asarray(sol.stats["num_accepted_steps"], jnp.int32),
        done=done,
        result=RESULTS.promote(result),
        event=event,
    )
    new = jax.tree_util.tree_map(lambda a, b: jnp.where(active, a, b), new, carry)
    saved = None if saves is None else (sol.ts[1], sol.ys[1])
    return new, saved


def flow_run_to(
    objective: Objective,
    dynamics: AbstractFlow,
    carry: FlowState,
    target: Int[Array, ""],
    *,
    t1: Float[Array, ""],
    stop: AbstractStopRule | None,
    segment: int,
) -> FlowState:
    """Integrates `carry` until the run stops (at `t1`, the stop rule's crossing, a solver
    failure, or its budget of `dynamics.max_steps` solver steps) or has taken `target` solver
    steps in all, accepted and rejected; at most `segment` (static: the compiled loop's bound)
    of them in this call.

    The carry holds everything Diffrax's loop holds between two steps, so running to `a` and
    then to `b` takes the very steps of running to `b`, and a run ends on its budget at the
    same step as in one piece.
    """
    return _flow_segment(objective, dynamics, carry, target, t1=t1, stop=stop, segment=segment)[0]


def flow_result(
    carry: FlowState, final_loss: Float[Array, ""], *, stop: AbstractStopRule | None
) -> RESULTS:
    """The result code of a stopped flow, from Diffrax's outcome and the loss `final_loss`
    at its end: `converged` where the stop rule was met, `max_steps_reached` at `t1` or on the
    step budget short of it (`successful` at `t1` without a stop rule), `non_finite` for a
    NaN loss, Diffrax's code for a solver failure."""
    finished = (carry.result == RESULTS.successful) | (carry.result == RESULTS.event_occurred)
    if stop is not None:
        met = stop.met(final_loss) | carry.event
        done_code = RESULTS.where(met, RESULTS.converged, RESULTS.max_steps_reached)
    else:
        done_code = RESULTS.successful
    code = RESULTS.where(finished, done_code, carry.result)
    return RESULTS.where(jnp.isnan(final_loss), RESULTS.non_finite, code)
