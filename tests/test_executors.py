"""Sweeps whose chunks run elsewhere: on threads, on each of several devices, in a process
pool, on a Dask cluster (one of whose workers is killed mid-sweep), with retries; each
bit-identical to the serial sweep."""

import concurrent.futures as cf
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import xarray as xr

import flowdip as fd
from flowdip._sweep import engine


GRID = fd.Grid(n=[4, 8], m=[4], k=[32, 128], seeds=4, d=3)
KWARGS = dict(
    dynamics=fd.GradientDescent(1.0),
    num_steps=400,
    stop=fd.LossBelow(1e-4),
    progress=False,
    chunk_size=4,
)


@pytest.fixture(scope="module")
def serial():
    return fd.sweep(GRID, **KWARGS)


def _same(a: xr.Dataset, b: xr.Dataset) -> None:
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())


def test_threads_equal_serial_and_write_the_same_folder(serial, tmp_path):
    with cf.ThreadPoolExecutor(2) as pool:
        got = fd.sweep(GRID, executor=pool, out=tmp_path / "a", **KWARGS)
    _same(serial, got)
    chunks = sorted(p.name for p in (tmp_path / "a").glob("chunk_*.npz"))
    assert len(chunks) == len(fd.plan_chunks(GRID, chunk_size=4))
    # The folder is complete: a second call reads it (no chunk runs again).
    calls = []
    with cf.ThreadPoolExecutor(1) as pool:
        real = pool.submit
        pool.submit = lambda *a, **k: calls.append(a) or real(*a, **k)
        again = fd.sweep(GRID, executor=pool, out=tmp_path / "a", **KWARGS)
    assert calls == []
    _same(serial, again)


def test_a_failing_chunk_is_retried_then_named(serial, monkeypatch):
    real, failures = engine.execute, {"left": 2}
    lock = threading.Lock()

    def flaky(chunk, *args):
        with lock:
            fail = chunk.index == 1 and failures["left"] > 0
            failures["left"] -= fail
        if fail:
            raise RuntimeError("worker lost")
        return real(chunk, *args)

    monkeypatch.setattr(engine, "execute", flaky)
    with cf.ThreadPoolExecutor(2) as pool:
        _same(serial, fd.sweep(GRID, executor=pool, retries=2, **KWARGS))
        failures["left"] = 10
        named = r"chunk_00001\.npz failed 2 times.*worker lost"
        with pytest.raises(fd.SweepTaskError, match=named):
            fd.sweep(GRID, executor=pool, retries=1, **KWARGS)


def test_use_executor_reaches_sweeps_and_bad_executors_are_refused(serial):
    submitted = []

    class Counting(cf.ThreadPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):
            submitted.append(fn.chunk.index)
            return super().submit(fn, *args, **kwargs)

    with Counting(2) as pool, fd.use_executor(pool):
        _same(serial, fd.sweep(GRID, **KWARGS))
    assert sorted(submitted) == list(range(len(fd.plan_chunks(GRID, chunk_size=4))))
    with pytest.raises(TypeError, match="executor"):  # the message, or the checker's
        fd.sweep(GRID, executor="dask", **KWARGS)
    with pytest.raises(TypeError, match="executor"):
        with fd.use_executor(4):
            pass
    with pytest.raises(ValueError, match="retries"):
        fd.sweep(GRID, retries=-1, **KWARGS)


_DEVICES = """
import sys, jax
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_num_cpu_devices", 2)
import jax.numpy as jnp, numpy as np, flowdip as fd
from flowdip._sweep import engine
assert len(jax.local_devices()) == 2
used, real = set(), engine.execute
def spy(*args):
    used.add(jnp.zeros(()).devices().pop().id)  # the device this chunk runs on
    return real(*args)
engine.execute = spy
grid = fd.Grid(n=[4, 8], m=[4], k=[32, 128], seeds=4, d=3)
kw = dict(dynamics=fd.GradientDescent(1.0), num_steps=400, stop=fd.LossBelow(1e-4),
          progress=False, chunk_size=4)
first = fd.sweep(grid, **kw)  # several local devices: one thread per device
for repeat in range(19):
    again = fd.sweep(grid, **kw)
    assert again.drop_attrs().identical(first.drop_attrs()), repeat
assert used == {0, 1}, used
fd.save_dataset(first, sys.argv[1])
print("ok")
"""


def test_two_devices_equal_one_without_hanging(serial, tmp_path):
    # One thread per device, each chunk a single-device program: 20 sweeps in a process with
    # two CPU devices, each bit-identical to the serial sweep of this one-device process.
    out = tmp_path / "devices.nc"
    proc = subprocess.run(
        [sys.executable, "-c", _DEVICES, str(out)],
        capture_output=True,
        text=True,
        timeout=400,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    _same(serial, fd.load_dataset(out))


@pytest.mark.slow
def test_spawned_process_pool_equals_serial(serial, tmp_path):
    # A worker starts bare (spawn): the task carries float64 (and the compilation cache).
    # One worker compiles once; the pool's distribution of tasks is the executor's own.
    context = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(1, mp_context=context) as pool:
        got = fd.sweep(GRID, executor=pool, out=tmp_path / "p", **KWARGS)
    _same(serial, got)
    _same(serial, fd.load_dataset(tmp_path / "p" / "results.nc"))


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("dask.distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield cluster, client


@pytest.mark.slow
def test_dask_cluster_equals_serial_even_when_a_worker_is_killed(serial, cluster, tmp_path):
    # A worker is killed while it holds a chunk: the cluster reschedules that chunk (on the
    # other worker or the one its nanny restarts), and the dataset is the serial one.
    _, client = cluster
    out, result = tmp_path / "d", {}
    executor = client.get_executor()
    thread = threading.Thread(
        target=lambda: result.update(ds=fd.sweep(GRID, executor=executor, out=out, **KWARGS))
    )
    thread.start()
    pids = client.run(os.getpid)  # {worker address: pid}
    deadline, victim = time.monotonic() + 120, None
    while victim is None and time.monotonic() < deadline:
        busy = [w for w, tasks in client.processing().items() if tasks]
        victim = pids.get(busy[0]) if busy else None
        time.sleep(0.01)
    assert victim is not None, "no worker took a chunk"
    os.kill(victim, signal.SIGKILL)
    thread.join(timeout=400)
    assert not thread.is_alive() and "ds" in result
    _same(serial, result["ds"])
    assert len(list(out.glob("chunk_*.npz"))) == len(fd.plan_chunks(GRID, chunk_size=4))


@pytest.mark.slow
def test_cli_joins_a_scheduler(cluster, tmp_path):
    from flowdip import cli

    local, _ = cluster
    out = tmp_path / "fig1"
    args = ["reproduce", "ssvm-fig1", "--quick", "--n", "4", "--k", "16,32", "--seeds", "2"]
    assert cli.main(args + ["--scheduler", local.scheduler_address, "--out", str(out)]) == 0
    assert cli.main(args + ["--out", str(tmp_path / "serial")]) == 0
    _same(fd.load_dataset(out / "results.nc"), fd.load_dataset(tmp_path / "serial" / "results.nc"))


def test_cli_cluster_options_are_checked(capsys):
    from flowdip import cli

    base = ["reproduce", "ssvm-fig1", "--quick", "--out", "unused"]
    with pytest.raises(SystemExit) as done:
        cli.main(base + ["--workers", "0"])
    assert done.value.code == 2
    assert "--workers: expected a positive integer, got '0'" in capsys.readouterr().err
    assert cli.main(base + ["--workers", "2", "--scheduler", "tcp://x:1"]) == 2
    assert "not both" in capsys.readouterr().err
    # An experiment without sweeps does not take them.
    assert cli.main(["reproduce", "demo", "--workers", "2"]) == 2
    assert "does not take --workers" in capsys.readouterr().err
