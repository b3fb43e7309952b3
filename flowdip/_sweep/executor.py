"""Where a sweep's chunks run: in this process, on each local device of an accelerator, or as
tasks of any `concurrent.futures.Executor` (a Dask cluster's, a process pool).

A chunk is a picklable task (`ChunkTask`) that runs its runs, writes its file atomically to
the sweep folder itself (so that a finished chunk survives whatever happens to the driver)
and returns its outputs; the driver records each one in the manifest as it completes, retries
a failed task, and assembles the dataset. A chunk's results do not depend on where it ran:
every chunk is one single-device program of the same compiled code.
"""

import concurrent.futures as cf
import contextlib
import contextvars
import pathlib
import queue
import threading
from collections.abc import Callable, Iterator, Sequence

import jax

from . import engine, record, store
from .folder import chunk_bytes, write_atomic
from .plan import Chunk


class SweepTaskError(RuntimeError):
    """A chunk that failed on every attempt; the chunks finished before it are on disk."""


class ChunkTask:
    """One chunk of a sweep as a self-contained, picklable task: calling it (in any process
    that can import flowdip and, with a folder, write to it) runs the chunk, writes its file
    to `folder` and returns `(chunk index, outputs, checksum)`."""

    def __init__(self, chunk: Chunk, spec: dict, folder: pathlib.Path | None, digest: str):
        self.chunk, self.spec, self.folder, self.digest = chunk, spec, folder, digest
        # Workers start with JAX's defaults: they take the driver's precision and cache.
        self.x64 = bool(jax.config.jax_enable_x64)
        self.cache = jax.config.jax_compilation_cache_dir

    def __call__(self) -> tuple[int, dict, str | None]:
        if self.x64 and not jax.config.jax_enable_x64:
            jax.config.update("jax_enable_x64", True)
        if self.cache and not jax.config.jax_compilation_cache_dir:
            jax.config.update("jax_compilation_cache_dir", self.cache)
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
        s, c = self.spec, self.chunk
        outputs = engine.execute(
            c,
            s["grid"],
            s["instance"],
            s["dynamics"],
            s["horizon"],
            s["stop"],
            s["seed"],
            s["diagnostics"] or s["reachability"],
            s["compact"],
        )
        if store.diagnostics_version(s["config"]) >= 2:
            outputs.update(record.reach_outputs(c, s["grid"].d, s["instance"], s["seed"]))
        sha = None
        if self.folder is not None:
            data, sha = chunk_bytes(c, outputs, self.digest, s["seed"])
            write_atomic(self.folder, c.name, data)
        return c.index, outputs, sha


class DeviceExecutor(cf.Executor):
    """An executor with one thread per device, each task running with its thread's device
    as JAX's default device: chunks run side by side on the devices of one process, each a
    single-device program (so compaction is kept and no device waits on another).

    **Arguments:** `devices`: the devices to use (default: `jax.local_devices()`, this
    process's own, which is right under a multi-process runtime too).
    """

    def __init__(self, devices: Sequence[jax.Device] | None = None):
        self.devices = tuple(jax.local_devices() if devices is None else devices)
        if not self.devices:
            raise ValueError("DeviceExecutor needs at least one device.")
        free: queue.SimpleQueue = queue.SimpleQueue()
        for device in self.devices:
            free.put(device)
        self._local = threading.local()

        def pin():
            self._local.device = free.get_nowait()

        self._pool = cf.ThreadPoolExecutor(
            len(self.devices), thread_name_prefix="flowdip-device", initializer=pin
        )

    def submit(self, fn: Callable, /, *args, **kwargs) -> cf.Future:
        def on_device():
            with jax.default_device(self._local.device):
                return fn(*args, **kwargs)

        return self._pool.submit(on_device)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)


_DEFAULT: contextvars.ContextVar[cf.Executor | None] = contextvars.ContextVar(
    "flowdip_executor", default=None
)


def _check(executor) -> None:
    if executor is not None and not isinstance(executor, cf.Executor):
        raise TypeError(
            "executor must be a concurrent.futures.Executor (e.g. a Dask client's "
            f"get_executor()) or None; got executor={executor!r}."
        )


@contextlib.contextmanager
def use_executor(executor: cf.Executor | None) -> Iterator[None]:
    """Within this block, sweeps called without an `executor` of their own submit their
    chunks to `executor` (how `flowdip reproduce --workers N` hands its Dask cluster to an
    experiment's sweeps). `None` restores the default."""
    _check(executor)
    token = _DEFAULT.set(executor)
    try:
        yield
    finally:
        _DEFAULT.reset(token)


def resolve(executor: cf.Executor | None) -> tuple[cf.Executor | None, bool]:
    """The executor a sweep uses, and whether the sweep made it (and so shuts it down): the
    one given, else the one of `use_executor`, else one thread per local device when this
    process has several, else none (chunks run here, one after another)."""
    if executor is not None:
        _check(executor)
        return executor, False
    if _DEFAULT.get() is not None:
        return _DEFAULT.get(), False
    if len(jax.local_devices()) > 1:
        return DeviceExecutor(), True
    return None, False


def run_tasks(
    tasks: Sequence[ChunkTask],
    executor: cf.Executor | None,
    done: Callable[[Chunk, dict, str | None], None],
    retries: int = 2,
) -> None:
    """Runs `tasks` (here, or on `executor`), calling `done(chunk, outputs, checksum)` in
    this thread as each completes; a task that raises is submitted again, up to `retries`
    times.

    **Raises:** `SweepTaskError` naming the chunk, once a task has failed `retries + 1`
    times (the tasks still pending are cancelled; those finished are kept).
    """
    if executor is None:
        for task in tasks:
            _, outputs, sha = task()
            done(task.chunk, outputs, sha)
        return
    pending = {executor.submit(task): (task, 0) for task in tasks}
    try:
        while pending:
            finished, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for future in finished:
                task, failures = pending.pop(future)
                try:
                    _, outputs, sha = future.result()
                except Exception as error:
                    if failures >= retries:
                        raise SweepTaskError(
                            f"{task.chunk.name} failed {failures + 1} times; the last error: "
                            f"{type(error).__name__}: {error}"
                        ) from error
                    pending[executor.submit(task)] = (task, failures + 1)
                    continue
                done(task.chunk, outputs, sha)
    finally:
        for future in pending:
            future.cancel()
