"""Executing one chunk of a sweep on one device: every run of the chunk as one compiled,
vmapped program, or in segments between which the stopped runs leave the batch (compaction).
(Chunks run side by side on several devices or processes: see `executor`.)"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._analysis.sharpness import sharpness
from .._dynamics import AbstractDynamics, LossBelow
from .._generator.networks import TwoLayerDIP
from .._objective import Objective
from .._solve import (
    can_segment,
    horizon_array,
    run_outcome,
    run_segment,
    segment_length,
    solve_to,
    start_run,
)
from .plan import Chunk
from .protocol import Grid, Instance, run_keys
from .record import run_record


def _cell_run(instance, dynamics, horizon, stop, n_pad, m_pad, k_pad, d, diagnostics=False):
    """One run as a function of its key and true sizes (vmapped by the chunk program)."""

    def run(key, n_true, m_true, k_true):
        obj = instance.objective(
            key, n=n_pad, m=m_pad, k=k_pad, d=d, n_true=n_true, m_true=m_true, k_true=k_true
        )
        traj = solve_to(
            obj, dynamics, horizon, stop=stop, num_saves=1, save_params=False, throw=False
        )
        sigma0 = _sigma0(obj.generator, n_true)
        error = jnp.linalg.norm(traj.final_signal - obj.problem.x_true)
        # Masked neurons and padded rows give zero rows of the Hessian: λ_max is unchanged.
        sharp = sharpness(obj, obj.initial_state()).value if diagnostics else None
        return run_record(
            final_loss=traj.final_loss,
            initial_loss=traj.initial_loss,
            result=traj.result,
            num_steps=traj.num_steps,
            stop_time=traj.stop_time,
            sigma0=sigma0,
            recovery_error=error,
            sharpness0=sharp,
            loss_rose=traj.loss_rose,
        )

    return run


def _sigma0(net: TwoLayerDIP, n_true):
    return net.sigma_min_jacobian(n_true)


@eqx.filter_jit
def _run_chunk(instance, dynamics, horizon, stop, n_pad, m_pad, k_pad, d, keys, sizes, diagnostics):
    run = _cell_run(instance, dynamics, horizon, stop, n_pad, m_pad, k_pad, d, diagnostics)
    return jax.vmap(run)(keys, sizes[:, 0], sizes[:, 1], sizes[:, 2])


# -- compaction --------------------------------------------------------------------------------
# A vmapped loop steps every lane until the last one stops, so a chunk of 50 runs where one
# needs 25 000 steps and the rest 500 costs 50 × 25 000 steps. Chunks therefore
# run in segments: between segments the runs still going are gathered into a batch a factor
# `_COMPACT_RATIO` smaller (one compiled program per batch size), and the stopped ones are
# read out. A descent's segment is a number of its steps, a flow's a number of solver steps
# (so that a segment costs about the same in every lane), and a run takes the same steps
# wherever its segments end; only the round-off of batched products may differ between batch
# sizes. A descent's segment doubles after each segment in which no run stopped and falls back
# to its first length after one in which some did: a chunk whose runs all go to the horizon
# then makes a few round trips, not `_SEGMENTS`, while stops are still seen within a short
# segment of where they happen. (A flow's segment bounds a compiled loop: it keeps its length.)
#: Halving (rather than quartering) on P1's costly descent cells: 1.9× faster than one vmapped
#: solve per chunk against 1.2×, for one more compiled program per halving.
_COMPACT_RATIO = 2
_SEGMENTS = 32  # host round trips per run at most (each costs a dispatch and a sync)
#: Descent steps per segment at least: a round trip costs about a millisecond, as much as tens
#: of steps of a small batch.
_MIN_DESCENT_SEGMENT = 256


class _Lanes(eqx.Module):
    """What a lane holds that its steps do not change (kept apart from its `Segmented` run,
    so that a segment's program neither takes nor returns it: returning it would copy every
    lane's problem and weights once per segment)."""

    objective: Objective
    sigma0: jax.Array
    sharpness0: jax.Array | None


@eqx.filter_jit
def _start_lanes(instance, dynamics, horizon, n_pad, m_pad, k_pad, d, keys, sizes, diagnostics):
    def one(key, n_true, m_true, k_true):
        obj = instance.objective(
            key, n=n_pad, m=m_pad, k=k_pad, d=d, n_true=n_true, m_true=m_true, k_true=k_true
        )
        run = start_run(obj, dynamics, horizon)
        sharp = sharpness(obj, obj.initial_state()).value if diagnostics else None
        sigma0 = _sigma0(obj.generator, n_true)
        return _Lanes(obj, sigma0, sharp), run

    return eqx.filter_vmap(one)(keys, sizes[:, 0], sizes[:, 1], sizes[:, 2])


def _lane_outputs(lane, run, dynamics, stop, horizon) -> dict:
    out = run_outcome(lane.objective, dynamics, run, horizon=horizon, stop=stop)
    x = lane.objective.signal(out.parameters)
    return run_record(
        final_loss=out.final_loss,
        initial_loss=run.initial_loss,
        result=out.result,
        num_steps=out.num_steps,
        stop_time=out.stop_time,
        sigma0=lane.sigma0,
        recovery_error=jnp.linalg.norm(x - lane.objective.problem.x_true),
        sharpness0=lane.sharpness0,
        loss_rose=out.loss_rose,
    )


@eqx.filter_jit
def _advance_lanes(lanes, runs, read, dynamics, stop, horizon, segment):
    # Also returns every lane's outputs as they stand, so that no second program per batch
    # size is compiled to read out; but only when a lane not yet `read` has stopped (the
    # branch is outside the vmap, so it is taken, not masked): computed every segment, the
    # read-out cost a quarter of the segments' time on small cells.
    def one(lane, run):
        return run_segment(lane.objective, dynamics, run, segment, horizon=horizon, stop=stop)

    runs = eqx.filter_vmap(one)(lanes, runs)
    # The read-out's arrays are operands of the branches, not values they close over: JAX
    # before 0.6.1 raises `UnexpectedTracerError` on Equinox's enumeration comparisons of
    # closed-over tracers inside `cond` and `eval_shape`.
    arrays, static = eqx.partition((lanes, runs, dynamics, stop, horizon), eqx.is_array)

    def outputs(arrays):
        lanes, runs, dynamics, stop, horizon = eqx.combine(arrays, static)
        read_out = eqx.filter_vmap(_lane_outputs, in_axes=(0, 0, None, None, None))
        return read_out(lanes, runs, dynamics, stop, horizon)

    shapes = jax.eval_shape(outputs, arrays)

    def blank(_):
        return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    fresh = jnp.any(runs.carry.done & ~read)
    return runs, jax.lax.cond(fresh, outputs, blank, arrays)


@eqx.filter_jit
def _gather_lanes(lanes, idx):
    return jax.tree_util.tree_map(lambda a: a[idx] if eqx.is_array(a) else a, lanes)


def _inputs(runs, seed):
    """The keys and true sizes `(n, m, k)` of `runs`."""
    keys = run_keys(seed, np.asarray([(n, m, s) for n, m, _, s in runs], np.int32))
    return keys, jnp.asarray([(n, m, k) for n, m, k, _ in runs], jnp.int32)


def _with_ids(out: dict, runs) -> dict:
    """`out` with the `(n, m, k, seed)` of each run, which place the runs in the grid."""
    for j, name in enumerate(("n", "m", "k", "seed")):
        out[name] = np.asarray([r[j] for r in runs])
    return out


def _execute_compacted(chunk, grid, instance, dynamics, horizon, stop, seed, diagnostics):
    runs = list(chunk.runs)
    keys, sizes = _inputs(runs, seed)
    pads = (chunk.n_pad, chunk.m_pad, chunk.k_pad, grid.d)
    horizon_ = horizon_array(dynamics, horizon)
    lanes, runs_ = _start_lanes(instance, dynamics, horizon_, *pads, keys, sizes, diagnostics)
    owner = np.arange(len(runs))  # the run each lane holds
    rows: dict[int, dict] = {}
    doublings = 0  # segments in a row in which no run stopped

    while True:
        segment = segment_length(
            dynamics, horizon, _SEGMENTS, min_steps=_MIN_DESCENT_SEGMENT, doublings=doublings
        )
        read = np.asarray([int(r) in rows for r in owner])
        runs_, outputs = _advance_lanes(
            lanes, runs_, jnp.asarray(read), dynamics, stop, horizon_, segment
        )
        done = np.asarray(runs_.carry.done)
        fresh = np.flatnonzero(done & ~read)
        doublings = 0 if len(fresh) else doublings + 1
        if len(fresh):
            values = {name: np.asarray(v) for name, v in outputs.items()}
            for j in fresh:
                rows[int(owner[j])] = {name: v[j] for name, v in values.items()}
        if done.all():
            break
        active = np.flatnonzero(~done)
        size = len(owner)
        while size > 1 and len(active) <= size // _COMPACT_RATIO:
            size //= _COMPACT_RATIO
        if size < len(owner):
            size = max(size, len(active))
            # Fill up with a stopped lane: it takes no step, so it cannot hold the loop.
            idx = np.concatenate([active, np.full(size - len(active), np.flatnonzero(done)[0])])
            lanes, runs_ = _gather_lanes((lanes, runs_), jnp.asarray(idx))
            owner = owner[idx]
    return _with_ids(
        {name: np.stack([rows[r][name] for r in range(len(runs))]) for name in rows[0]}, runs
    )


def run_cell(
    instance: Instance,
    dynamics: AbstractDynamics,
    *,
    key,
    n,
    m,
    k,
    d,
    horizon,
    stop=None,
    pad: tuple[int, int, int] | None = None,
    diagnostics: bool = False,
) -> dict:
    """One run exactly as the sweep runs it (unbatched), optionally padded to sizes `pad`
    `(n, m, k)`, for checks and debugging (`diagnostics` as for [`flowdip.sweep`][])."""
    n_pad, m_pad, k_pad = (n, m, k) if pad is None else pad
    fn = _cell_run(instance, dynamics, horizon, stop, n_pad, m_pad, k_pad, d, diagnostics)
    return fn(key, jnp.asarray(n), jnp.asarray(m), jnp.asarray(k))


def execute(
    chunk: Chunk,
    grid: Grid,
    instance: Instance,
    dynamics: AbstractDynamics,
    horizon: int | float,
    stop: LossBelow | None,
    seed: int,
    diagnostics: bool = False,
    compact: bool = True,
) -> dict[str, np.ndarray]:
    """Runs every run of one chunk of a sweep on JAX's default device (see
    [`flowdip.sweep`][] for the arguments; `horizon` as from `horizon_of`).

    **Returns:** a dict of per-run numpy arrays in the order of `chunk.runs`: the variables of
    `variables(diagnostics)` and `n`, `m`, `k`, `seed` (what the chunk's file holds).
    """
    if compact and can_segment(dynamics):
        return _execute_compacted(chunk, grid, instance, dynamics, horizon, stop, seed, diagnostics)
    runs = list(chunk.runs)
    keys, sizes = _inputs(runs, seed)
    pads = (chunk.n_pad, chunk.m_pad, chunk.k_pad, grid.d)
    out = _run_chunk(instance, dynamics, horizon, stop, *pads, keys, sizes, diagnostics)
    return _with_ids({name: np.asarray(v) for name, v in out.items()}, runs)
