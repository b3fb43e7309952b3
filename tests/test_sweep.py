"""sweep(): batched, padded, resumable runs against single runs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowdip as fd
from flowdip._sweep import engine, record


GRID = fd.Grid(n=[6, 10], m=[4], k=[8, 16], seeds=3, d=3)
INSTANCE = fd.Instance(scaling="1/m")
DYN = fd.GradientDescent(0.5)
STEPS = 300
STOP = fd.LossBelow(1e-4)


def _sweep(**kwargs):
    kwargs = (
        dict(
            dynamics=DYN,
            num_steps=STEPS,
            stop=STOP,
            instance=INSTANCE,
            progress=False,
            chunk_size=8,
        )
        | kwargs
    )
    return fd.sweep(GRID, **kwargs)


def _same(a, b):
    for name in record.VARIABLES:
        assert np.allclose(
            a[name].values, b[name].values, rtol=1e-12, atol=1e-14, equal_nan=True
        ), name


@pytest.fixture(scope="module")
def reference():
    return _sweep()


def test_grid_is_complete_and_chunked(reference):
    assert reference.attrs["complete"] == 1
    assert reference.final_loss.dims == ("n", "m", "k", "seed")
    assert list(reference.k.values) == [8, 16]
    chunks = fd.plan_chunks(GRID, chunk_size=8)
    assert sum(len(c.runs) for c in chunks) == GRID.num_runs == 12
    assert {c.n_pad for c in chunks} == {10} and {c.k_pad for c in chunks} == {16}


def test_pad_to_raises_the_padded_sizes_only():
    # pad_to raises every bucket's sizes to at least its own (sweeps then share a program).
    chunks = fd.plan_chunks(GRID, chunk_size=8)
    padded = fd.plan_chunks(GRID, chunk_size=8, pad_to=(12, 1, 32))
    assert [c.runs for c in padded] == [c.runs for c in chunks]
    assert {(c.n_pad, c.k_pad) for c in padded} == {(12, 32)}
    assert {c.m_pad for c in padded} == {c.m_pad for c in chunks}


def test_padded_masked_run_equals_unpadded_run():
    key = fd.run_key(0, 6, 3, 1)
    plain = fd.run_cell(INSTANCE, DYN, key=key, n=6, m=3, k=8, d=3, horizon=STEPS, stop=STOP)
    padded = fd.run_cell(
        INSTANCE, DYN, key=key, n=6, m=3, k=8, d=3, horizon=STEPS, stop=STOP, pad=(10, 5, 16)
    )
    for name in record.VARIABLES:
        # σ₀ is the square root of an eigenvalue known to ~eps·trace, hence its atol.
        atol = 1e-7 if name == "sigma0" else 1e-14
        assert jnp.allclose(plain[name], padded[name], rtol=1e-12, atol=atol), name


@pytest.mark.parametrize("n, k, pad", [(5, 8, (20, 10)), (6, 8, (6, 8)), (12, 8, (20, 10))])
def test_sigma0_of_a_padded_net_equals_the_svd_of_the_unpadded_jacobian(n, k, pad):
    # Padded nets with more rows than neurons take the k×k side of the Gram matrix.
    key = fd.run_key(0, n, 3, 0)
    net = INSTANCE.objective(key, n=n, m=3, k=k, d=3).generator
    jac = jax.jacfwd(lambda W: fd.TwoLayerDIP(u=net.u, W=W, V=net.V)())(net.W)
    svals = np.linalg.svd(np.asarray(jac).reshape(n, -1), compute_uv=False)
    expected = svals[n - 1] if n <= k else 0.0  # rank J <= k
    big = INSTANCE.objective(
        key, n=pad[0], m=3, k=pad[1], d=3, n_true=n, m_true=3, k_true=k
    ).generator
    got = engine._sigma0(big, jnp.asarray(n, jnp.int32))
    assert np.isclose(got, expected, rtol=1e-8, atol=1e-7)


def test_sweep_cell_equals_solve_on_the_same_keys(reference):
    for n, k, s in [(6, 8, 0), (10, 16, 2)]:
        key = fd.run_key(0, n, 4, s)
        obj = INSTANCE.objective(key, n=n, m=4, k=k, d=3)
        traj = fd.solve(obj, DYN, num_steps=STEPS, stop=STOP, throw=False)
        cell = reference.sel(n=n, m=4, k=k, seed=s)
        assert np.isclose(cell.final_loss, traj.final_loss, rtol=1e-12)
        assert int(cell.num_steps) == int(traj.num_steps)
        assert bool(cell.converged) == bool(traj.converged)
        assert np.isclose(cell.sigma0, obj.generator.sigma_min_jacobian(), rtol=1e-10)
        err = jnp.linalg.norm(traj.final_signal - obj.problem.x_true)
        assert np.isclose(cell.recovery_error, err, rtol=1e-12)


def test_compacted_descent_equals_one_vmapped_solve(monkeypatch):
    # Descent chunks run in segments and drop their stopped runs into smaller batches; the
    # numbers must be those of one vmapped solve per chunk (`compact=False`).
    # This grid's runs stop anywhere between 58 steps and the cap of 3000.
    grid = fd.Grid(n=[4, 8], m=[4], k=[32, 128], seeds=4, d=3)
    kwargs = dict(
        dynamics=fd.GradientDescent(1.0),
        num_steps=3000,
        stop=fd.LossBelow(1e-4),
        progress=False,
        chunk_size=16,
    )
    real, sizes = engine._gather_lanes, []

    def spy(lanes, idx):
        sizes.append(len(idx))
        return real(lanes, idx)

    advance, segments = engine._advance_lanes, []

    def segment_spy(lanes, runs, read, *args):
        runs, outputs = advance(lanes, runs, read, *args)
        fresh = np.asarray(runs.carry.done) & ~np.asarray(read)
        segments.append((int(args[-1]), bool(fresh.any())))
        return runs, outputs

    monkeypatch.setattr(engine, "_gather_lanes", spy)
    monkeypatch.setattr(engine, "_advance_lanes", segment_spy)
    # Batches 16, 4, 1 rather than every halving: the same mechanism, fewer programs to compile.
    monkeypatch.setattr(engine, "_COMPACT_RATIO", 4)
    compacted = fd.sweep(grid, **kwargs)
    assert sizes and min(sizes) <= 4  # the batch of 16 shrank to its last few runs
    # A segment doubles after one in which no run stopped and is 256 steps again after one in
    # which some did (runs stop within a short segment of where they would).
    first = engine._MIN_DESCENT_SEGMENT
    assert segments[0][0] == first
    for (length, stopped), (following, _) in zip(segments, segments[1:]):
        assert following == (first if stopped else min(2 * length, 3001))
    assert max(length for length, _ in segments) > first
    assert sum(stopped for _, stopped in segments) > 1
    steps = compacted.num_steps.values
    assert steps.min() < 100 and steps.max() == 3000
    plain = fd.sweep(grid, compact=False, **kwargs)
    _same(compacted, plain)
    assert np.array_equal(steps, plain.num_steps.values)
    assert np.array_equal(compacted.result.values, plain.result.values)


def test_runs_that_all_go_to_the_horizon_make_few_round_trips(monkeypatch):
    # No run stops before the horizon: the segments double (256, 512, 1024, then the rest), so
    # a chunk costs 4 round trips to the host instead of one per 256 steps.
    advance, lengths = engine._advance_lanes, []

    def spy(*args):
        lengths.append(int(args[-1]))
        return advance(*args)

    monkeypatch.setattr(engine, "_advance_lanes", spy)
    kwargs = dict(dynamics=DYN, num_steps=3000, instance=INSTANCE, progress=False)
    grid = fd.Grid(n=[6], m=[4], k=[8], seeds=3, d=3)
    ds = fd.sweep(grid, **kwargs)
    assert lengths == [256, 512, 1024, 2048]
    assert (ds.num_steps.values == 3000).all()
    _same(ds, fd.sweep(grid, compact=False, **kwargs))


def test_resume_after_a_kill_equals_an_uninterrupted_run(reference, tmp_path, monkeypatch):
    real = engine.execute
    calls = []

    def dying(chunk, *args):
        if len(calls) == 1:
            raise KeyboardInterrupt  # killed after the first chunk was written
        calls.append(chunk.index)
        return real(chunk, *args)

    monkeypatch.setattr(engine, "execute", dying)
    with pytest.raises(KeyboardInterrupt):
        _sweep(out=tmp_path)
    assert (tmp_path / "chunk_00000.npz").exists()
    monkeypatch.setattr(
        engine, "execute", lambda chunk, *a: calls.append(chunk.index) or real(chunk, *a)
    )
    resumed = _sweep(out=tmp_path)
    assert calls == [0, 1]  # the first chunk was not run again
    _same(reference, resumed)
    _same(reference, fd.load_dataset(tmp_path / "results.nc"))


def test_resume_refuses_other_arguments(tmp_path):
    _sweep(out=tmp_path)
    with pytest.raises(ValueError, match="other arguments"):
        _sweep(out=tmp_path, num_steps=STEPS + 1)


def test_shards_merged_equal_one_process(reference, tmp_path):
    a = _sweep(out=tmp_path / "a", shard=(0, 2))
    b = _sweep(out=tmp_path / "b", shard=(1, 2))
    assert a.attrs["complete"] == 0 and b.attrs["complete"] == 0
    merged = fd.merge_sweeps([tmp_path / "a", tmp_path / "b"], out=tmp_path / "all")
    assert merged.attrs["complete"] == 1
    _same(reference, merged)


def test_a_diverging_cell_does_not_stop_the_others():
    grid = fd.Grid(n=[4, 40], m=[4], k=[16], seeds=2, d=3)
    ds = fd.sweep(
        grid,
        # At η = 10 the n = 40 cell blows up within a few steps while the n = 4 cell runs on
        # (at η = 30 the n = 4 runs blow up too: their parameters jump 10⁴-fold, every unit dead).
        dynamics=fd.GradientDescent(10.0),
        num_steps=300,
        stop=STOP,
        instance=fd.Instance(activation=fd.Softplus()),
        progress=False,
    )
    codes = fd.result_codes()
    assert np.all(ds.result.sel(n=40).values == codes["diverged"])
    first = ds.sel(n=4, m=4, k=16, seed=0)  # a run in the same compiled batch that finishes
    assert int(first.result) == codes["max_steps_reached"] and int(first.num_steps) == 300
    assert bool(ds.filled.all())
    assert np.all(np.isfinite(ds.final_loss.values))


def test_bad_sweep_arguments():
    with pytest.raises(ValueError, match="num_steps"):
        fd.sweep(GRID, dynamics=DYN, progress=False)
    with pytest.raises(ValueError, match="shard"):
        _sweep(shard=(2, 2))
    with pytest.raises(ValueError, match="k must be"):
        fd.Grid(n=[4], m=[2], k=[0])
    with pytest.raises(ValueError, match="scaling"):
        fd.Instance(scaling="2/m")
    with pytest.raises(ValueError, match="v_law must be one of"):
        fd.Instance(v_law="cauchy")
    # Our ValueError, or jaxtyping's TypeCheckError (a TypeError) under the runtime checker.
    with pytest.raises((ValueError, TypeError), match="compact"):
        _sweep(compact="yes")
