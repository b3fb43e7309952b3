"""What a sweep records of each run: the variable names, the one function that builds a
run's record, whichever way the run was executed, and the reachability of each run's
measurements (computed on the host)."""

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._analysis.reachability import activation_range, reachability_batch
from .._solve import RESULTS
from .._typing import Array, Bool, Float, Int
from .plan import Chunk
from .protocol import Instance, run_keys


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
#: Per-run variables added by `sweep(..., reachability=True)` (diagnostics version 2): the
#: [`flowdip.Reachability`][] of the run's measurements (`margin`, `distance`, `loss_bound`).
REACHABILITY = ("reach_margin", "reach_distance", "reach_loss_bound")
#: The diagnostics version a sweep with `reachability=True` writes (its config's
#: `"diagnostics"`); version 1 (`true`, `diagnostics=True` alone) lacks `REACHABILITY`.
DIAGNOSTICS_VERSION = 2


def variables(diagnostics: int) -> tuple[str, ...]:
    """The names of a sweep's per-run variables for a diagnostics version (0 or False: none;
    1 or True: `DIAGNOSTICS`; 2: `DIAGNOSTICS` and `REACHABILITY`)."""
    names = VARIABLES + (DIAGNOSTICS if diagnostics else ())
    return names + (REACHABILITY if int(diagnostics) >= 2 else ())


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


@eqx.filter_jit
def _measurements(instance, n_pad, m_pad, k_pad, d, keys, sizes):
    def one(key, n, m, k):
        obj = instance.objective(key, n=n_pad, m=m_pad, k=k_pad, d=d, n_true=n, m_true=m, k_true=k)
        return obj.B, obj.problem.y

    return jax.vmap(one)(keys, sizes[:, 0], sizes[:, 1], sizes[:, 2])


def reach_outputs(chunk: Chunk, d: int, instance: Instance, seed: int) -> dict[str, np.ndarray]:
    """The `REACHABILITY` variables of the runs of `chunk`, in its order: each run's `B` and
    `y` drawn padded as the sweep draws them, then cut to the run's true `(m, k)` (padded rows
    and masked neurons are zero) and solved on the host ([`flowdip.reachability_batch`][]).

    NaN for a failed solve, and for every run when the activation's range is unknown or all
    of `ℝ` (with a warning).
    """
    runs = chunk.runs
    try:
        value_range = activation_range(instance.activation)
    except ValueError as error:
        warnings.warn(f"reach_* recorded as NaN: {error}", stacklevel=2)
        return {name: np.full(len(runs), np.nan) for name in REACHABILITY}
    keys = run_keys(seed, np.asarray([(n, m, s) for n, m, _, s in runs], np.int32))
    sizes = np.asarray([(n, m, k) for n, m, k, _ in runs], np.int32)
    pads = (chunk.n_pad, chunk.m_pad, chunk.k_pad, d)
    B, y = _measurements(instance, *pads, keys, jnp.asarray(sizes))
    reach = reachability_batch(
        np.asarray(B), np.asarray(y), value_range, loss=instance.loss, sizes=sizes[:, 1:]
    )
    return dict(
        reach_margin=reach.margin,
        reach_distance=reach.distance,
        reach_loss_bound=reach.loss_bound,
    )
