"""Typed results of one run: `Trajectory` and the result codes `RESULTS`."""

import diffrax as dfx
import equinox as eqx
import jax.numpy as jnp

from .._generator.networks import AbstractGenerator
from .._typing import Array, ArrayLike, Bool, Float, Int, PyTree


class RESULTS(dfx.RESULTS):  # pyright: ignore
    """Result codes of a run. Diffrax's own codes (`successful`, `max_steps_reached`,
    `dt_min_reached`, …) carry through unchanged; flowdip adds four.

    - `successful`: the run reached its horizon and no stop rule was given.
    - `converged`: the stop rule was met (for a flow, at the located crossing time).
    - `max_steps_reached`: the run ended (at its horizon `t1`/`num_steps`, or on the solver's
      `max_steps` budget) before its stop rule was met.
    - `diverged`: the loss grew past `diverge_factor · max(F(θ₀), 1)`, or the parameters became
      non-finite or their norm grew past `param_factor · max(‖θ₀‖, 1)` (defaults `10⁶` and
      `10³`); the run stopped there.
    - `non_finite`: the loss became NaN.
    - `unreachable`: the stop rule is certified never to be met
      ([`flowdip.LossBelowOrUnreachable`][]); the run ended at once.
    - any other Diffrax/Optimistix code: the ODE solver failed.
    """

    converged = "The stop rule was met."
    diverged = (
        "The run diverged: the loss grew past `diverge_factor * max(F(theta_0), 1)` (default "
        "1e6), or the parameters became non-finite or their norm grew past "
        "`param_factor * max(|theta_0|, 1)` (default 1e3; a saturating activation keeps the loss "
        "bounded while they blow up). For gradient descent, try a smaller step size (below 2/L)."
    )
    non_finite = "The loss became NaN."
    unreachable = (
        "The stop rule can never be met: the loss is bounded below by a reachability "
        "certificate above the tolerance, so the run ended at once."
    )


#: Codes that `throw=True` never raises for.
_BENIGN = ("successful", "converged", "unreachable")


class Trajectory(eqx.Module):
    """One run of one dynamics on one objective, saved at times `ts`.

    **Fields:**

    - `ts`: the save times; for gradient descent `τ·η` for the saved steps `τ`.
    - `steps`: the step index of each save for descent, `-1` for flows.
    - `valid`: `False` for save times after the run stopped (their values are NaN).
    - `loss`: `F(θ)` at each save.
    - `recovery_error`: `‖x − x̄‖` at each save (NaN when `x̄` is unknown).
    - `displacement`: `‖θ − θ₀‖` (Frobenius) at each save.
    - `params`: `θ − θ₀` in isometric coordinates ([`flowdip.Objective.coordinates`][]),
      shape `(T, p)`, or `None` when not saved. Differences of two trajectories' `params`
      on the same objective are parameter gaps.
    - `signal`: `x = g(u, θ)` at each save, shape `(T, n)`, or `None`.
    - `final_state`: the dynamics' state at the stop (`z` on the reduced path).
    - `final_generator`: the generator with the final parameters.
    - `final_signal`, `final_loss`, `initial_loss`: as named.
    - `stop_time`: the time the run ended (crossing time for a flow that converged).
    - `horizon`: the requested horizon (`t1`, or `num_steps·η` for descent).
    - `num_steps`: steps taken (descent: the step at which it stopped; flow: accepted steps).
    - `result`: a [`flowdip.RESULTS`][] code.
    - `dynamics`: the dynamics that produced it.
    - `loss_rose`: for a discrete dynamics, whether the loss rose at some step
      (`F(θ_{τ+1}) > (1 + 10⁻⁹) F(θ_τ)`, the margin ignoring round-off on plateaus); `None` for
      flows, whose loss never rises.
    """

    ts: Float[Array, " T"]
    steps: Int[Array, " T"]
    valid: Bool[Array, " T"]
    loss: Float[Array, " T"]
    recovery_error: Float[Array, " T"]
    displacement: Float[Array, " T"]
    params: Float[Array, "T p"] | None
    signal: Float[Array, "T n"] | None
    final_state: PyTree
    final_generator: AbstractGenerator
    final_signal: Float[Array, " n"]
    final_loss: Float[Array, ""]
    initial_loss: Float[Array, ""]
    stop_time: Float[Array, ""]
    horizon: Float[Array, ""]
    num_steps: Int[Array, ""]
    result: RESULTS
    dynamics: eqx.Module
    loss_rose: Bool[Array, ""] | None = None

    @property
    def converged(self) -> Bool[Array, ""]:
        """Whether the stop rule was met."""
        return self.result == RESULTS.converged

    @property
    def final_recovery_error(self) -> Float[Array, ""]:
        """`‖x − x̄‖` at the stop (the last valid save)."""
        idx = jnp.maximum(jnp.sum(self.valid) - 1, 0)
        return self.recovery_error[idx]

    def at_saves(self, idx: Int[ArrayLike, " S"]) -> "Trajectory":
        """The same run with only the saves `idx` (e.g. the flow at a descent's save times)."""
        per_save = (
            "ts",
            "steps",
            "valid",
            "loss",
            "recovery_error",
            "displacement",
            "params",
            "signal",
        )
        idx = jnp.asarray(idx)
        present = [f for f in per_save if getattr(self, f) is not None]
        return eqx.tree_at(
            lambda t: [getattr(t, f) for f in present],
            self,
            [getattr(self, f)[idx] for f in present],
        )

    @property
    def message(self) -> str:
        """The human-readable meaning of `result` (single, unbatched runs only)."""
        if self.result == RESULTS.max_steps_reached and self.stop_time >= self.horizon:
            return "The horizon was reached before the stop rule was met."
        if self.result == RESULTS.successful:
            return "The horizon was reached."
        return RESULTS[self.result]
