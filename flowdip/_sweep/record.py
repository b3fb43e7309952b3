"""What a sweep records of each run: the variable names and the one function that builds a
run's record, whichever way the run was executed."""

import jax.numpy as jnp

from .._solve import RESULTS
from .._typing import Array, Bool, Float, Int


#: Per-run variables of every sweep.
VARIABLES = (
    "final_loss",
    "initial_loss",
    "converged",
    "result",
    "num_steps",
    "stop_time",
    "sigma0",
    "recovery_error",
)
#: Per-run variables added by `sweep(..., diagnostics=True)`: `sharpness0`, the sharpness
#: `λ_max(∇²F(θ₀))` at the initialisation (Lanczos, 20 steps), and `loss_rose`, whether a
#: descent's loss rose at some step (NaN for flows, whose loss never rises).
DIAGNOSTICS = ("sharpness0", "loss_rose")


def variables(diagnostics: bool) -> tuple[str, ...]:
    """The names of a sweep's per-run variables, with or without the diagnostics."""
    return VARIABLES + (DIAGNOSTICS if diagnostics else ())


def run_record(
    *,
    final_loss: Float[Array, ""],
    initial_loss: Float[Array, ""],
    result: RESULTS,
    num_steps: Int[Array, ""],
    stop_time: Float[Array, ""],
    sigma0: Float[Array, ""],
    recovery_error: Float[Array, ""],
    sharpness0: Float[Array, ""] | None = None,
    loss_rose: Bool[Array, ""] | None = None,
) -> dict[str, Array]:
    """One run's record, keyed by the names of [`variables`][]: traced, so it is vmapped
    with the run.

    **Arguments:** the run's outcome (`result`, a `RESULTS` item) and values as named;
    `sharpness0` switches the diagnostics on, with `loss_rose` (`None`: the dynamics cannot
    tell, recorded as NaN).

    **Returns:** a dict of scalars (`converged` is derived from `result`).
    """
    out = dict(
        final_loss=final_loss,
        initial_loss=initial_loss,
        converged=result == RESULTS.converged,
        result=result._value,
        num_steps=num_steps,
        stop_time=stop_time,
        sigma0=sigma0,
        recovery_error=recovery_error,
    )
    if sharpness0 is not None:
        # Flows carry no rise flag: NaN, in the loss's dtype like every other float.
        nan = jnp.full((), jnp.nan, final_loss.dtype)
        out["sharpness0"] = sharpness0
        out["loss_rose"] = nan if loss_rose is None else loss_rose.astype(final_loss.dtype)
    return out
