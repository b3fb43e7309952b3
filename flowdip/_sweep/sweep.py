"""Batched experiments: every (n, m, k, seed) cell of a grid as one compiled program per
shape bucket, vmapped, masked, chunked, run here, on each device or on any executor, streamed
to disk, resumable."""

import concurrent.futures as cf
import os
import pathlib
import warnings

import numpy as np

from .._dynamics import AbstractDynamics, LossBelow
from .._solve import horizon_of
from .._typing import check_int
from . import executor as executor_, folder as folder_, record, store
from .plan import check_plan, plan_chunks
from .protocol import Grid, Instance


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
    reachability: bool = False,
    compact: bool = True,
    executor: cf.Executor | None = None,
    retries: int = 2,
):
    """Runs every cell of `grid` and returns an `xarray.Dataset` with dims `(n, m, k, seed)`.

    Runs whose `n`, `m` and `k` lie within a factor `bucket_ratio` share one compiled program
    (a bucket): sizes `n`, `m` and `k` are padded to the bucket's largest, with
    masks that make a padded run compute exactly the unpadded one (the `1/√k` uses the true
    `k`); sizes, widths and seeds are flattened on one batch axis, and every run stops on its
    own. Per-run data is drawn from keys inside the compiled program. Each chunk is one
    single-device program: chunks run one after another here, side by side on the devices of
    a process that has several (one thread per device), or as tasks of an `executor`.

    Sweeps run each chunk in segments (about `num_steps/32` steps of a descent, at least 256,
    `max_steps/32` solver steps of a flow) and, between segments, move the runs still going
    into a batch half as large once they fit (one more compiled program per batch size), so
    that a straggler no longer makes the whole chunk step to the cap (`compact`).

    **Arguments:**

    - `grid`: the [`flowdip.Grid`][].
    - `dynamics`: e.g. `GradientDescent(1.0)` with `num_steps`, or a flow with `t1`.
    - `stop`: the stop rule (e.g. `LossBelow(1e-7)`); `converged` records whether it was met.
    - `instance`: how problems and networks are drawn ([`flowdip.Instance`][]).
    - `out`: a folder; each finished chunk is written there at once, and a sweep started again
      with the same arguments skips the chunks already there (resume after a kill).
    - `seed`: base seed of the run keys ([`flowdip.run_key`][]).
    - `chunk_size`: most runs per compiled call (memory grows with it). A chunk runs until its
      slowest run stops, dropping its stopped runs as it goes (above).
    - `bucket_ratio`: the factor within which grid values share a compiled program (larger:
      fewer compilations, more padding).
    - `pad_to`: `(n, m, k)`: pad every bucket to at least these sizes, so that sweeps of
      different grids (padded alike, with chunks of one length) share one compiled program.
    - `shard`: `(i, N)`: run only chunks `c` with `c % N == i` (a job array); join the
      outputs with [`flowdip.merge_sweeps`][].
    - `executor`: a `concurrent.futures.Executor` to run the chunks on, e.g. a Dask
      cluster's `Client(...).get_executor()` (see "GPUs and clusters" in the docs) or a
      process pool. Each chunk is a picklable task that writes its own file to `out` (which
      its workers must see: a shared file system) and returns its outputs; progress follows
      completions. Default: the one of [`flowdip.use_executor`][] if any, else one thread per
      device ([`flowdip.DeviceExecutor`][]) when this process has several, else none.
      Results are bit for bit the same wherever the chunks run.
    - `retries`: how many times a failed chunk is submitted again (a Dask cluster also
      reschedules the chunks of a worker that died, by itself) before the sweep raises
      [`flowdip.SweepTaskError`][].
    - `progress`: show a progress bar.
    - `diagnostics`: also record, per run, `sharpness0` (`λ_max(∇²F(θ₀))`, 20 Lanczos steps
      on Hessian-vector products) and `loss_rose` (whether a descent's loss rose at some step;
      NaN for flows). Off, the sweep (and its folder's arguments) is unchanged.
    - `reachability`: also record (with the diagnostics) the [`flowdip.Reachability`][] of
      each run's measurements (`reach_margin`, `reach_distance`, `reach_loss_bound`): a linear
      program per run, and a least squares where `y` is out of reach, on the host, at 0.1–1 s
      per run for `k` in the thousands, far more than most runs cost; it depends only on the
      run's keys, so [`flowdip.sweep_reachability`][] computes it once for a grid instead. A
      folder begun with `diagnostics` alone resumes as it is, without them (with a warning).
    - `compact`: let chunks drop their stopped runs (above). Every run takes the same
      steps either way, but a product's round-off can depend on the batch size; a run whose
      descent is unstable (`η·λ_max > 2`, the loss rising) amplifies that to a different stop
      step or, rarely, outcome (in the full `ssvm-fig1` sweep: 25 runs of 7200 stopped at
      another step and 1 changed outcome). `False` runs each chunk as one vmapped solve, bit
      for bit as earlier versions did (on P1's costly cells, about 1.2 times slower on a CPU).

    **Returns:** an `xarray.Dataset` (cells not run by this shard are NaN; `attrs["complete"]`
    says whether every cell is filled).
    """
    if not isinstance(grid, Grid):
        raise TypeError(f"grid must be a flowdip.Grid; got grid={grid!r}.")
    if not isinstance(dynamics, AbstractDynamics):
        raise TypeError(f"dynamics must be a flowdip dynamics; got dynamics={dynamics!r}.")
    if not isinstance(instance, Instance):
        raise TypeError(f"instance must be a flowdip.Instance; got instance={instance!r}.")
    if stop is not None and not isinstance(stop, LossBelow):
        raise TypeError(f"stop must be a flowdip.LossBelow or None; got stop={stop!r}.")
    if out is not None and (not isinstance(out, str | os.PathLike) or not str(out).strip()):
        # `Path("")` is the current folder: an empty `out` would write the sweep there.
        raise ValueError(f"out must name a folder (or be None); got out={out!r}.")
    check_int("seed", seed, 0)
    horizon = horizon_of(dynamics, num_steps=num_steps, t1=t1)
    i, count = shard
    if not (isinstance(count, int) and count >= 1 and isinstance(i, int) and 0 <= i < count):
        raise ValueError(f"shard must be (i, N) with 0 <= i < N; got {shard!r}.")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1; got {chunk_size!r}.")
    if not bucket_ratio >= 1:
        raise ValueError(f"bucket_ratio must be >= 1; got {bucket_ratio}.")
    check_int("retries", retries, 0)
    flags = dict(compact=compact, diagnostics=diagnostics, reachability=reachability)
    for name, flag in (flags | dict(progress=progress)).items():
        if not isinstance(flag, bool):
            raise ValueError(f"{name} must be True or False; got {name}={flag!r}.")

    if pad_to is not None and (len(pad_to) != 3 or min(int(v) for v in pad_to) < 1):
        raise ValueError(f"pad_to must be three sizes (n, m, k) >= 1; got {pad_to!r}.")
    config = store.config(
        grid,
        instance,
        dynamics,
        horizon,
        stop,
        seed,
        chunk_size,
        bucket_ratio,
        pad_to,
        diagnostics=diagnostics or reachability,
        reachability=reachability,
        compact=compact,
    )

    spec = dict(
        grid=grid,
        instance=instance,
        dynamics=dynamics,
        horizon=horizon,
        stop=stop,
        seed=seed,
        diagnostics=diagnostics,
        reachability=reachability,
        compact=compact,
    )
    pool, own = executor_.resolve(executor)

    chunks = plan_chunks(grid, chunk_size=chunk_size, bucket_ratio=bucket_ratio, pad_to=pad_to)
    mine = [c for c in chunks if c.index % count == i]
    try:
        if out is None:
            spec["config"] = config
            return _run(grid, chunks, mine, spec, None, progress, pool, retries)
        folder = pathlib.Path(out)
        with folder_.locked(folder):
            config = _resumable_config(folder, config)
            opened = folder_.open_folder(folder, config, store.digest(config), store.provenance())
            spec["config"] = config
            ds = _run(grid, chunks, mine, spec, opened, progress, pool, retries)
            store.save_dataset(ds, folder / "results.nc")
        return ds
    finally:
        if own:
            pool.shutdown(cancel_futures=True)


def _resumable_config(folder: pathlib.Path, config: dict) -> dict:
    """`config`, or its version-1 diagnostics (without the reachability variables) when
    `folder` holds a sweep of those, which then resumes as it was begun."""
    if store.diagnostics_version(config) < 2:
        return config
    manifest = folder_.read_manifest(folder)
    older = dict(config, diagnostics=True)
    if manifest is None or manifest.get("digest") != store.digest(older):
        return config
    warnings.warn(
        f"{folder} holds a sweep begun without the reachability variables: it resumes "
        f"without {', '.join(record.REACHABILITY)} (compute them with "
        "flowdip.sweep_reachability, or give another folder to record them).",
        stacklevel=3,
    )
    return older


def _run(grid, chunks, mine, spec, folder, progress, executor, retries):
    """Runs the chunks of `mine` not finished in `folder` (if any), each writing its file
    there as it finishes, and assembles the dataset."""
    results = {} if folder is None else folder.read(mine)
    todo = [c for c in mine if c.index not in results]
    bar = _progress(sum(len(c.runs) for c in mine), len(mine), progress)
    bar.update(sum(len(c.runs) for c in mine if c.index in results), len(mine) - len(todo))
    # Absolute: a worker on another machine (or in another folder) gets the path as it is.
    path, digest = (None, "") if folder is None else (folder.path.resolve(), folder.digest)
    tasks = [executor_.ChunkTask(c, spec, path, digest) for c in todo]

    def done(chunk, outputs, sha):
        if folder is not None:
            folder.record(chunk, sha)
        results[chunk.index] = outputs
        bar.update(len(chunk.runs), 1)

    try:
        executor_.run_tasks(tasks, executor, done, retries)
    finally:
        bar.close()
    return store.assemble(grid, chunks, results, spec["config"])


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


def sweep_reachability(
    grid: Grid,
    *,
    instance: Instance = Instance(),
    seed: int = 0,
    chunk_size: int = 512,
    bucket_ratio: float = 4.0,
    pad_to: tuple[int, int, int] | None = None,
    progress: bool = True,
):
    """The reachability of every run of a sweep's grid, without running the sweep: the
    variables `reach_margin`, `reach_distance` and `reach_loss_bound` that
    `sweep(..., reachability=True)` records (see [`flowdip.Reachability`][]), for runs drawn
    from the same keys ([`flowdip.run_key`][]) and so aligned with the sweep's dataset (e.g.
    `xr.merge([ds, fd.sweep_reachability(grid, ...)])`). Runs are drawn in chunks as the sweep
    draws them (`chunk_size`, `bucket_ratio` and `pad_to` change only the round-off of `B`).

    **Arguments:** as for [`flowdip.sweep`][].

    **Returns:** an `xarray.Dataset` with dims `(n, m, k, seed)`.
    """
    import xarray as xr

    if not isinstance(instance, Instance):
        raise TypeError(f"instance must be a flowdip.Instance; got instance={instance!r}.")
    check_int("seed", seed, 0)
    check_plan(grid, chunk_size, bucket_ratio, pad_to)
    chunks = plan_chunks(grid, chunk_size=chunk_size, bucket_ratio=bucket_ratio, pad_to=pad_to)
    shape = (len(grid.n), len(grid.m), len(grid.k), grid.seeds)
    data = {name: np.full(shape, np.nan) for name in record.REACHABILITY}
    where = [{v: j for j, v in enumerate(values)} for values in (grid.n, grid.m, grid.k)]
    bar = _progress(grid.num_runs, len(chunks), progress)
    for c in chunks:
        res = record.reach_outputs(c, grid.d, instance, seed)
        for run, (n, m, k, s) in enumerate(c.runs):
            idx = (where[0][n], where[1][m], where[2][k], s)
            for name in record.REACHABILITY:
                data[name][idx] = res[name][run]
        bar.update(len(c.runs), 1)
    bar.close()
    coords = dict(n=list(grid.n), m=list(grid.m), k=list(grid.k), seed=np.arange(grid.seeds))
    dims = ("n", "m", "k", "seed")
    return xr.Dataset({name: (dims, v) for name, v in data.items()}, coords=coords)
