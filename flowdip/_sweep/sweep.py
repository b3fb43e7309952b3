"""Batched experiments: every (n, m, k, seed) cell of a grid as one compiled program per
shape bucket, vmapped, masked, chunked, sharded over devices, streamed to disk, resumable."""

import dataclasses
import hashlib
import json
import math
import os
import pathlib
import subprocess
import time
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._analysis.sharpness import sharpness
from .._dynamics import AbstractDynamics, LossBelow
from .._generator.activations import AbstractActivation, Sigmoid
from .._generator.networks import sample_V, sample_W, TwoLayerDIP, uniform_on_sphere, V_LAWS
from .._losses import AbstractLoss, MSE
from .._objective import Objective
from .._problem.problem import InverseProblem
from .._solve import (
    can_segment,
    descent_result,
    descent_run_to,
    descent_start,
    DescentState,
    horizon_of,
    RESULTS,
    solve_to,
)


def _ints(name: str, values) -> tuple[int, ...]:
    values = (values,) if isinstance(values, int | np.integer) else tuple(values)
    if not values or any(isinstance(v, bool) or int(v) != v or v < 1 for v in values):
        raise ValueError(f"{name} must be positive integers; got {values!r}.")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} has repeated values: {values!r}.")
    return tuple(sorted(int(v) for v in values))


@dataclasses.dataclass(frozen=True)
class Grid:
    """The cells of a sweep: every combination of `n`, `m`, `k`, each run `seeds` times.

    **Arguments:** `n` (signal sizes), `m` (measurement counts), `k` (widths): an int or a
    list each; `seeds`: runs per cell; `d`: input size (it does not affect the dynamics).
    """

    n: tuple[int, ...]
    m: tuple[int, ...]
    k: tuple[int, ...]
    seeds: int = 50
    d: int = 10

    def __init__(self, *, n, m, k, seeds: int = 50, d: int = 10):
        object.__setattr__(self, "n", _ints("n", n))
        object.__setattr__(self, "m", _ints("m", m))
        object.__setattr__(self, "k", _ints("k", k))
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise ValueError(f"seeds must be an integer >= 1; got {seeds!r}.")
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise ValueError(f"d must be an integer >= 1; got {d!r}.")
        object.__setattr__(self, "seeds", seeds)
        object.__setattr__(self, "d", d)

    @property
    def num_runs(self) -> int:
        """Total number of runs."""
        return len(self.n) * len(self.m) * len(self.k) * self.seeds


@dataclasses.dataclass(frozen=True)
class Instance:
    """How each run's problem and network are drawn (the P1 protocol by default).

    `A` (entries N(0,1) for `scaling="unit"`, N(0,1/m) for `"1/m"`) and `x̄` (N(0,1) entries,
    or uniform on the sphere) come from the run key's problem part; `u`, `W₀` and `V` (law
    `v_law`) from its network part, neuron by neuron, so that a width-`k` network is the first
    `k` neurons of any wider one drawn from the same key.
    """

    activation: AbstractActivation = Sigmoid()
    v_law: str = "rademacher"
    scaling: str = "unit"
    signal: str = "gaussian"
    noise_std: float = 0.0
    loss: AbstractLoss = MSE()

    def __post_init__(self):
        if self.scaling not in ("unit", "1/m"):
            raise ValueError(f"scaling must be 'unit' or '1/m'; got {self.scaling!r}.")
        if self.signal not in ("gaussian", "sphere"):
            raise ValueError(f"signal must be 'gaussian' or 'sphere'; got {self.signal!r}.")
        if not (math.isfinite(self.noise_std) and self.noise_std >= 0):
            raise ValueError(f"noise_std must be >= 0; got {self.noise_std}.")
        if self.v_law not in V_LAWS:
            raise ValueError(f"v_law must be one of {V_LAWS}; got {self.v_law!r}.")

    def objective(
        self, key, *, n: int, m: int, k: int, d: int, n_true=None, m_true=None, k_true=None
    ) -> Objective:
        """The objective of one run.

        `n`, `m`, `k` are the array sizes; `n_true`, `m_true`, `k_true` (possibly traced)
        switch off what lies beyond them (zero rows and columns, masked neurons), so that a
        padded run computes exactly the unpadded one. Every entry is drawn from its own folded
        key, so values never depend on the padding.
        """
        dtype = jnp.result_type(float)
        k_a, k_x, k_e, k_u, k_w, k_v = jr.split(key, 6)
        n_true = n if n_true is None else n_true
        m_true = m if m_true is None else m_true
        rows = _below(m, m_true, dtype)
        cols = _below(n, n_true, dtype)

        def entries(kk, shape):
            idx = [jnp.arange(s) for s in shape]
            if len(shape) == 1:
                return jax.vmap(lambda i: jr.normal(jr.fold_in(kk, i), (), dtype))(idx[0])
            return jax.vmap(
                lambda i: jax.vmap(
                    lambda j: jr.normal(jr.fold_in(jr.fold_in(kk, i), j), (), dtype)
                )(idx[1])
            )(idx[0])

        A = entries(k_a, (m, n)) * rows[:, None] * cols[None, :]
        if self.scaling == "1/m":
            A = A / jnp.sqrt(jnp.asarray(m_true, dtype))
        x = entries(k_x, (n,)) * cols
        if self.signal == "sphere":
            x = x / jnp.linalg.norm(x)
        y = A @ x + self.noise_std * entries(k_e, (m,)) * rows
        problem = InverseProblem(A, x, y=y, noise_std=self.noise_std)
        V = sample_V(k_v, n, k, self.v_law) * cols[:, None]
        mask = None if k_true is None else _below(k, k_true, dtype)
        net = TwoLayerDIP(
            u=uniform_on_sphere(k_u, d),
            W=sample_W(k_w, k, d),
            V=V,
            activation=self.activation,
            mask=mask,
        )
        return Objective(problem, net, self.loss)


def _below(size: int, true, dtype):
    """`[j < true for j in range(size)]` as 0/1 floats (`true` may be traced)."""
    idx = jnp.arange(size)
    return (idx < jnp.asarray(true).astype(idx.dtype)).astype(dtype)


def run_key(seed: int, n: int, m: int, s: int):
    """The key of run `s` of the cells with sizes `(n, m)`: shared by every width `k`, so that
    widths are compared on common random numbers (same `A`, `x̄`, `u` and neurons)."""
    key = jr.key(seed)
    for v in (n, m, s):
        key = jr.fold_in(key, v)
    return key


@jax.jit
def _keys_from(base, nms):
    def one(row):
        key = base
        for j in range(3):
            key = jr.fold_in(key, row[j])
        return key

    return jax.vmap(one)(nms)


def run_keys(seed: int, nms: np.ndarray):
    """`run_key(seed, n, m, s)` for every row `(n, m, s)`, in one compiled call."""
    return _keys_from(jr.key(seed), jnp.asarray(nms))


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


def _variables(diagnostics: bool) -> tuple[str, ...]:
    return VARIABLES + (DIAGNOSTICS if diagnostics else ())


def _cell_run(instance, dynamics, horizon, stop, n_pad, m_pad, k_pad, d, diagnostics=False):
    """One run as a function of its key and true sizes (vmapped by the chunk program)."""

    def run(key, n_true, m_true, k_true):
        obj = instance.objective(
            key, n=n_pad, m=m_pad, k=k_pad, d=d, n_true=n_true, m_true=m_true, k_true=k_true
        )
        traj = solve_to(
            obj, dynamics, horizon, stop=stop, num_saves=1, save_params=False, throw=False
        )
        x_true = obj.problem.x_true
        out = dict(
            final_loss=traj.final_loss,
            initial_loss=traj.initial_loss,
            converged=traj.converged,
            result=traj.result._value,
            num_steps=traj.num_steps,
            stop_time=traj.stop_time,
            sigma0=_sigma0(obj.generator, n_true),
            recovery_error=jnp.linalg.norm(traj.final_signal - x_true),
        )
        if diagnostics:
            # Masked neurons and padded rows give zero rows of the Hessian: λ_max is unchanged.
            out["sharpness0"] = sharpness(obj, obj.initial_state()).value
            rose = traj.loss_rose
            nan = jnp.full((), jnp.nan, traj.final_loss.dtype)
            out["loss_rose"] = nan if rose is None else rose.astype(nan.dtype)
        return out

    return run


def _sigma0(net: TwoLayerDIP, n_true):
    return net.sigma_min_jacobian(n_true)


@eqx.filter_jit
def _run_chunk(
    instance, dynamics, horizon, stop, n_pad, m_pad, k_pad, d, keys, sizes, mesh, diagnostics
):
    run = _cell_run(instance, dynamics, horizon, stop, n_pad, m_pad, k_pad, d, diagnostics)

    def local(keys, sizes):
        return jax.vmap(run)(keys, sizes[:, 0], sizes[:, 1], sizes[:, 2])

    if mesh is None:
        return local(keys, sizes)
    # Each device runs its own slice with its own loop: no collective inside the loops, so a
    # device never waits on another (a sharded vmapped while_loop would all-reduce its
    # predicate every step, and that can deadlock when devices outnumber cores).
    spec = jax.sharding.PartitionSpec("runs")
    return jax.shard_map(local, mesh=mesh, in_specs=(spec, spec), out_specs=spec, check_vma=False)(
        keys, sizes
    )


# -- descent sweeps with compaction ------------------------------------------------------------
# A vmapped while_loop steps every lane until the last one stops, so a chunk of 50 runs where
# one needs 25 000 steps and the rest 500 costs 50 × 25 000 steps. Descent sweeps therefore run
# in segments: between segments the runs still going are gathered into a batch a factor
# `_COMPACT_RATIO` smaller (one compiled program per batch size), and the stopped ones are
# read out. Each step is masked on its own, so a run takes the same steps wherever its
# segments end; only the round-off of batched products may differ between batch sizes.
_COMPACT_RATIO = 4
_SEGMENTS = 32  # host round trips per run at most (each costs a dispatch and a sync)


class _Lanes(eqx.Module):
    objective: Objective
    carry: DescentState
    loss0: jax.Array
    threshold: jax.Array
    sigma0: jax.Array
    sharpness0: jax.Array | None


@eqx.filter_jit
def _start_lanes(instance, dynamics, n_pad, m_pad, k_pad, d, keys, sizes, diagnostics):
    def one(key, n_true, m_true, k_true):
        obj = instance.objective(
            key, n=n_pad, m=m_pad, k=k_pad, d=d, n_true=n_true, m_true=m_true, k_true=k_true
        )
        start = descent_start(obj, dynamics)
        sharp = sharpness(obj, obj.initial_state()).value if diagnostics else None
        sigma0 = _sigma0(obj.generator, n_true)
        return _Lanes(obj, start.state, start.initial_loss, start.threshold, sigma0, sharp)

    return eqx.filter_vmap(one)(keys, sizes[:, 0], sizes[:, 1], sizes[:, 2])


def _lane_outputs(lane, dynamics, stop, horizon) -> dict:
    obj = lane.objective
    tau, state, loss, rose = (
        lane.carry.step,
        lane.carry.state,
        lane.carry.last_loss,
        lane.carry.loss_rose,
    )
    code = descent_result(lane.carry, threshold=lane.threshold, horizon=horizon, stop=stop)
    x = obj.signal(dynamics.parameters(state))
    out = dict(
        final_loss=loss,
        initial_loss=lane.loss0,
        converged=code == RESULTS.converged,
        result=code._value,
        num_steps=tau,
        stop_time=tau.astype(loss.dtype) * dynamics.step_size.astype(loss.dtype),
        sigma0=lane.sigma0,
        recovery_error=jnp.linalg.norm(x - obj.problem.x_true),
    )
    if lane.sharpness0 is not None:
        out["sharpness0"] = lane.sharpness0
        out["loss_rose"] = rose.astype(loss.dtype)
    return out


@eqx.filter_jit
def _advance_lanes(lanes, dynamics, stop, horizon, segment):
    # Also returns every lane's outputs as they stand (an O(nk) read-out against a segment's
    # O(segment·mk) steps), so that no second program per batch size is compiled to read out.
    def one(lane):
        target = jnp.minimum(lane.carry.step + segment, horizon + 1)
        carry = descent_run_to(
            lane.objective,
            dynamics,
            lane.carry,
            target,
            stop=stop,
            threshold=lane.threshold,
            horizon=horizon,
        )
        lane = eqx.tree_at(lambda x: x.carry, lane, carry)
        return lane, _lane_outputs(lane, dynamics, stop, horizon)

    return eqx.filter_vmap(one)(lanes)


@eqx.filter_jit
def _gather_lanes(lanes, idx):
    return jax.tree_util.tree_map(lambda a: a[idx] if eqx.is_array(a) else a, lanes)


def _execute_compacted(chunk, grid, instance, dynamics, horizon, stop, seed, diagnostics):
    runs = list(chunk.runs)
    keys = run_keys(seed, np.asarray([(n, m, s) for n, m, _, s in runs], np.int32))
    sizes = jnp.asarray([(n, m, k) for n, m, k, _ in runs], jnp.int32)
    pads = (chunk.n_pad, chunk.m_pad, chunk.k_pad, grid.d)
    lanes = _start_lanes(instance, dynamics, *pads, keys, sizes, diagnostics)
    horizon_ = jnp.asarray(horizon, jnp.int32)
    segment = jnp.asarray(max(1, -(-(horizon + 1) // _SEGMENTS)), jnp.int32)
    owner = np.arange(len(runs))  # the run each lane holds
    rows: dict[int, dict] = {}

    def read_out(outputs, owner, done):
        fresh = [j for j in np.flatnonzero(done) if int(owner[j]) not in rows]
        if fresh:
            values = {name: np.asarray(v) for name, v in outputs.items()}
            for j in fresh:
                rows[int(owner[j])] = {name: v[j] for name, v in values.items()}

    while True:
        lanes, outputs = _advance_lanes(lanes, dynamics, stop, horizon_, segment)
        done = np.asarray(lanes.carry.done)
        if done.all():
            read_out(outputs, owner, done)
            break
        active = np.flatnonzero(~done)
        size = len(owner)
        while size > 1 and len(active) <= size // _COMPACT_RATIO:
            size //= _COMPACT_RATIO
        if size < len(owner):
            size = max(size, len(active))
            read_out(outputs, owner, done)
            # Fill up with a stopped lane: it takes no step, so it cannot hold the loop.
            idx = np.concatenate([active, np.full(size - len(active), np.flatnonzero(done)[0])])
            lanes = _gather_lanes(lanes, jnp.asarray(idx))
            owner = owner[idx]
    out = {name: np.stack([rows[r][name] for r in range(len(runs))]) for name in rows[0]}
    for j, name in enumerate(("n", "m", "k", "seed")):
        out[name] = np.asarray([r[j] for r in runs])
    return out


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


def _groups(values: tuple[int, ...], ratio: float) -> list[tuple[int, ...]]:
    groups: list[list[int]] = []
    for v in values:
        if groups and v <= ratio * groups[-1][0]:
            groups[-1].append(v)
        else:
            groups.append([v])
    return [tuple(g) for g in groups]


@dataclasses.dataclass(frozen=True)
class _Chunk:
    index: int
    n_pad: int
    m_pad: int
    k_pad: int
    runs: tuple[tuple[int, int, int, int], ...]  # (n, m, k, seed)

    @property
    def name(self) -> str:
        return f"chunk_{self.index:05d}.npz"


def plan_chunks(
    grid: Grid,
    *,
    chunk_size: int,
    bucket_ratio: float = 4.0,
    pad_to: tuple[int, int, int] | None = None,
) -> list[_Chunk]:
    """The sweep's deterministic list of chunks (what `--shard i/N` splits).

    A bucket is one compiled program: `n`, `m` and `k` are padded to the largest of groups of
    grid values that lie within a factor `bucket_ratio` of the group's smallest. (`n` matters
    too although the reduced step is `O(mk)`: drawing `V`, forming `B = AV/√k` and the Gram
    matrix of `σ_min(J(θ₀))` cost `O(nk)` to `O(n²k)` per run, more than the steps of a run
    that converges quickly.) Within a bucket the runs go in the order `(n, m, k, seed)`, so a
    chunk of `seeds` runs is one cell. `pad_to = (n, m, k)` pads every bucket to at least these
    sizes (sweeps padded alike, with chunks of one length, share one compiled program).
    """
    lo_n, lo_m, lo_k = (0, 0, 0) if pad_to is None else (int(v) for v in pad_to)
    chunks = []
    for ns in _groups(grid.n, bucket_ratio):
        for ms in _groups(grid.m, bucket_ratio):
            for ks in _groups(grid.k, bucket_ratio):
                n_pad, m_pad, k_pad = max(*ns, lo_n), max(*ms, lo_m), max(*ks, lo_k)
                # Memory per run is dominated by V (n×k), W (k×d), B (m×k) and A (m×n).
                per_run = 8 * (k_pad * (n_pad + m_pad + grid.d + 8) + m_pad * n_pad)
                size = max(1, min(chunk_size, (256 * 2**20) // per_run))
                runs = [(n, m, k, s) for n in ns for m in ms for k in ks for s in range(grid.seeds)]
                for start in range(0, len(runs), size):
                    chunk = _Chunk(
                        len(chunks), n_pad, m_pad, k_pad, tuple(runs[start : start + size])
                    )
                    chunks.append(chunk)
    return chunks


def _config(
    grid, instance, dynamics, horizon, stop, seed, chunk_size, bucket_ratio, pad_to=None
) -> dict:
    extra = {} if pad_to is None else dict(pad_to=[int(v) for v in pad_to])
    return dict(
        **extra,
        grid=dataclasses.asdict(grid),
        instance={f.name: repr(getattr(instance, f.name)) for f in dataclasses.fields(instance)},
        dynamics=repr(dynamics),
        step_size=math.nan if dynamics.step_size is None else float(dynamics.step_size),
        horizon=horizon,
        stop=repr(stop),
        seed=seed,
        chunk_size=chunk_size,
        bucket_ratio=bucket_ratio,
        dtype=str(jnp.result_type(float)),
    )


def _versions() -> dict:
    import importlib.metadata as md

    names = ("flowdip", "jax", "jaxlib", "equinox", "diffrax", "optimistix", "lineax", "numpy")
    out = {}
    for name in names:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def _git_revision() -> str:
    here = pathlib.Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=here, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _atomic_savez(path: pathlib.Path, **arrays) -> None:
    tmp = path.with_suffix(".tmp.npz")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _mesh():
    devices = jax.devices()
    # Simulated CPU devices share the same cores, so sharding gains nothing there, and
    # XLA:CPU multi-device programs were seen to hang intermittently on this 2-core machine
    # (with shard_map and with a sharded vmap alike). On CPU the padded batch runs on one
    # device; accelerators get one slice per device.
    if len(devices) == 1 or devices[0].platform == "cpu":
        return None
    return jax.sharding.Mesh(np.asarray(devices), ("runs",))


def _execute(
    chunk, grid, instance, dynamics, horizon, stop, seed, diagnostics=False, compact=True
) -> dict:
    mesh = _mesh()
    if compact and mesh is None and can_segment(dynamics):
        return _execute_compacted(chunk, grid, instance, dynamics, horizon, stop, seed, diagnostics)
    ndev = len(jax.devices())
    runs = list(chunk.runs)
    padded = runs + [runs[-1]] * ((-len(runs)) % ndev)  # repeats of a real run, dropped below
    keys = run_keys(seed, np.asarray([(n, m, s) for n, m, _, s in padded], np.int32))
    sizes = jnp.asarray([(n, m, k) for n, m, k, _ in padded], jnp.int32)
    if mesh is not None:
        spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("runs"))
        keys, sizes = jax.device_put(keys, spec), jax.device_put(sizes, spec)
    pads = (chunk.n_pad, chunk.m_pad, chunk.k_pad, grid.d)
    out = _run_chunk(instance, dynamics, horizon, stop, *pads, keys, sizes, mesh, diagnostics)
    out = {name: np.asarray(v)[: len(runs)] for name, v in out.items()}
    for j, name in enumerate(("n", "m", "k", "seed")):
        out[name] = np.asarray([r[j] for r in runs])
    return out


def sweep(
    grid: Grid,
    *,
    dynamics: AbstractDynamics,
    num_steps: int | None = None,
    t1: float | None = None,
    stop: LossBelow | None = None,
    instance: Instance = Instance(),
    out: str | os.PathLike | None = None,
    seed: int = 0,
    chunk_size: int = 512,
    bucket_ratio: float = 4.0,
    pad_to: tuple[int, int, int] | None = None,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    diagnostics: bool = False,
    compact: bool = True,
):
    """Runs every cell of `grid` and returns an `xarray.Dataset` with dims `(n, m, k, seed)`.

    Runs whose `n`, `m` and `k` lie within a factor `bucket_ratio` share one compiled program
    (a bucket): sizes `n`, `m` and `k` are padded to the bucket's largest, with
    masks that make a padded run compute exactly the unpadded one (the `1/√k` uses the true
    `k`); sizes, widths and seeds are flattened on one batch axis, split over the devices of
    an accelerator (one slice and one loop per device; on CPU the batch runs on one device),
    and every run stops on its own (a chunk ends when all its runs have).
    Per-run data is drawn from keys inside the compiled program.

    On one device, descent sweeps run each chunk in segments of about `num_steps/32` steps
    and, between segments, move the runs still going into a batch 4 times smaller once they
    fit (one more compiled program per batch size), so that a straggler no longer makes the
    whole chunk step to the cap (`compact`).

    **Arguments:**

    - `grid`: the [`flowdip.Grid`][].
    - `dynamics`: e.g. `GradientDescent(1.0)` with `num_steps`, or a flow with `t1`.
    - `stop`: the stop rule (e.g. `LossBelow(1e-7)`); `converged` records whether it was met.
    - `instance`: how problems and networks are drawn ([`flowdip.Instance`][]).
    - `out`: a folder; each finished chunk is written there at once, and a sweep started again
      with the same arguments skips the chunks already there (resume after a kill).
    - `seed`: base seed of the run keys ([`flowdip.run_key`][]).
    - `chunk_size`: most runs per compiled call (memory grows with it). A chunk runs until its
      slowest run stops; descents drop their stopped runs as they go (above), flows do not, so
      for flows chunks of one cell (`chunk_size = grid.seeds`) waste least when cells stop at
      very different times.
    - `bucket_ratio`: the factor within which grid values share a compiled program (larger:
      fewer compilations, more padding).
    - `pad_to`: `(n, m, k)`: pad every bucket to at least these sizes, so that sweeps of
      different grids (padded alike, with chunks of one length) share one compiled program.
    - `shard`: `(i, N)`: run only chunks `c` with `c % N == i` (a job array); join the
      outputs with [`flowdip.merge_sweeps`][].
    - `progress`: show a progress bar.
    - `diagnostics`: also record, per run, `sharpness0` (`λ_max(∇²F(θ₀))`, 20 Lanczos steps
      on Hessian-vector products) and `loss_rose` (whether a descent's loss rose at some step;
      NaN for flows). Off, the sweep (and its folder's arguments) is unchanged.
    - `compact`: let descent chunks drop their stopped runs (above). Every run takes the same
      steps either way, but a product's round-off can depend on the batch size; a run whose
      descent is unstable (`η·λ_max > 2`, the loss rising) amplifies that to a different stop
      step or, rarely, outcome (in the full `ssvm-fig1` sweep: 25 runs of 7200 stopped at
      another step and 1 changed outcome). `False` runs each chunk as one vmapped solve, bit
      for bit as earlier versions did (on P1's costly cells, about 1.2 times slower on a CPU).

    **Returns:** an `xarray.Dataset` (cells not run by this shard are NaN; `attrs["complete"]`
    says whether every cell is filled).
    """
    horizon = horizon_of(dynamics, num_steps=num_steps, t1=t1)
    i, count = shard
    if not (isinstance(count, int) and count >= 1 and isinstance(i, int) and 0 <= i < count):
        raise ValueError(f"shard must be (i, N) with 0 <= i < N; got {shard!r}.")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1; got {chunk_size!r}.")
    if not bucket_ratio >= 1:
        raise ValueError(f"bucket_ratio must be >= 1; got {bucket_ratio}.")
    for name, flag in (("compact", compact), ("diagnostics", diagnostics)):
        if not isinstance(flag, bool):
            raise ValueError(f"{name} must be True or False; got {name}={flag!r}.")

    if pad_to is not None and (len(pad_to) != 3 or min(int(v) for v in pad_to) < 1):
        raise ValueError(f"pad_to must be three sizes (n, m, k) >= 1; got {pad_to!r}.")
    config = _config(
        grid, instance, dynamics, horizon, stop, seed, chunk_size, bucket_ratio, pad_to
    )
    if diagnostics:
        config["diagnostics"] = True  # absent otherwise: folders of plain sweeps still resume
    if not compact and can_segment(dynamics):
        config["compact"] = False
    chunks = plan_chunks(grid, chunk_size=chunk_size, bucket_ratio=bucket_ratio, pad_to=pad_to)
    mine = [c for c in chunks if c.index % count == i]
    folder = None if out is None else pathlib.Path(out)
    results = {}
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        manifest = folder / "sweep.json"
        digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
        if manifest.exists():
            old = json.loads(manifest.read_text())
            if old.get("digest") != digest:
                raise ValueError(
                    f"{folder} holds a sweep with other arguments ({manifest}); use another "
                    "folder, or delete it to start again."
                )
        else:
            manifest.write_text(json.dumps(dict(config=config, digest=digest), indent=1))
        for c in mine:
            path = folder / c.name
            if path.exists():
                with np.load(path) as f:
                    results[c.index] = {name: f[name] for name in f.files}

    todo = [c for c in mine if c.index not in results]
    bar = _progress(sum(len(c.runs) for c in mine), len(mine), progress)
    bar.update(sum(len(c.runs) for c in mine if c.index in results), len(mine) - len(todo))
    for c in todo:
        res = _execute(c, grid, instance, dynamics, horizon, stop, seed, diagnostics, compact)
        if folder is not None:
            _atomic_savez(folder / c.name, **res)
        results[c.index] = res
        bar.update(len(c.runs), 1)
    bar.close()
    ds = _assemble(grid, chunks, results, config)
    if folder is not None:
        save_dataset(ds, folder / "results.nc")
    return ds


class _progress:
    def __init__(self, total_runs: int, total_chunks: int, enabled: bool):
        self.chunks, self.total_chunks = 0, total_chunks
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total_runs, unit="run", desc="sweep", smoothing=0.1)

    def update(self, runs: int, chunks: int):
        self.chunks += chunks
        if self.bar is not None:
            self.bar.set_postfix_str(f"chunks {self.chunks}/{self.total_chunks}", refresh=False)
            self.bar.update(runs)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def result_codes() -> dict[str, int]:
    """The integer of each [`flowdip.RESULTS`][] code, as stored in sweep datasets."""
    return {name: int(item._value) for name, item in RESULTS._name_to_item.items()}


def _assemble(grid: Grid, chunks, results: dict, config: dict):
    import xarray as xr

    shape = (len(grid.n), len(grid.m), len(grid.k), grid.seeds)
    variables = _variables(bool(config.get("diagnostics", False)))
    data = {name: np.full(shape, np.nan) for name in variables}
    filled = np.zeros(shape, bool)
    n_idx = {v: j for j, v in enumerate(grid.n)}
    m_idx = {v: j for j, v in enumerate(grid.m)}
    k_idx = {v: j for j, v in enumerate(grid.k)}
    for c in chunks:
        res = results.get(c.index)
        if res is None:
            continue
        idx = (
            np.asarray([n_idx[int(v)] for v in res["n"]]),
            np.asarray([m_idx[int(v)] for v in res["m"]]),
            np.asarray([k_idx[int(v)] for v in res["k"]]),
            np.asarray(res["seed"], int),
        )
        for name in variables:
            data[name][idx] = res[name]
        filled[idx] = True
    dims = ("n", "m", "k", "seed")
    ds = xr.Dataset(
        {name: (dims, values) for name, values in data.items()},
        coords=dict(n=list(grid.n), m=list(grid.m), k=list(grid.k), seed=np.arange(grid.seeds)),
    )
    ds["filled"] = (dims, filled)
    ds.attrs.update(
        config=json.dumps(config),
        versions=json.dumps(_versions()),
        git_revision=_git_revision(),
        result_codes=json.dumps(result_codes()),
        complete=int(filled.all()),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    return ds


def save_dataset(ds, path) -> None:
    """Writes a sweep dataset to netCDF (booleans as 0/1)."""
    ds = ds.copy()
    for name in ds.data_vars:
        if ds[name].dtype == bool:
            ds[name] = ds[name].astype("i1")
    tmp = pathlib.Path(str(path) + ".tmp")
    ds.to_netcdf(tmp, engine="scipy")
    os.replace(tmp, path)


def load_dataset(path):
    """Reads a dataset written by [`flowdip.sweep`][]."""
    import xarray as xr

    with xr.open_dataset(path, engine="scipy") as ds:
        ds = ds.load()
    if "filled" in ds:
        ds["filled"] = ds["filled"].astype(bool)
    return ds


def merge_sweeps(folders: Sequence[str | os.PathLike], out: str | os.PathLike | None = None):
    """Joins the chunk files that shards of one sweep wrote (to one or several folders)."""
    folders = [pathlib.Path(f) for f in folders]
    manifests = [json.loads((f / "sweep.json").read_text()) for f in folders]
    if len({m["digest"] for m in manifests}) != 1:
        raise ValueError("These folders hold sweeps with different arguments.")
    config = manifests[0]["config"]
    g = config["grid"]
    grid = Grid(n=g["n"], m=g["m"], k=g["k"], seeds=g["seeds"], d=g["d"])
    pad_to = config.get("pad_to")
    chunks = plan_chunks(
        grid,
        chunk_size=config["chunk_size"],
        bucket_ratio=config["bucket_ratio"],
        pad_to=None if pad_to is None else tuple(pad_to),
    )
    results = {}
    for folder in folders:
        for c in chunks:
            path = folder / c.name
            if c.index not in results and path.exists():
                with np.load(path) as f:
                    results[c.index] = {name: f[name] for name in f.files}
    ds = _assemble(grid, chunks, results, config)
    if out is not None:
        pathlib.Path(out).mkdir(parents=True, exist_ok=True)
        save_dataset(ds, pathlib.Path(out) / "results.nc")
    return ds
