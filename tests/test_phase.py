"""Flow and descent phase diagrams: same keys, flow cells equal single solves, sharpness at θ₀
equals the dense Hessian's, the loss-rise flag, the disagreement map."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from jax.flatten_util import ravel_pytree

import flowdip as fd
from flowdip import disagreement
from flowdip._sweep import record, store


# k = 5 and 12 share one bucket (padded to 12), so the flow cells below are padded runs.
GRID = fd.Grid(n=[6], m=[4], k=[5, 12], seeds=3, d=3)
INSTANCE = fd.Instance()
FLOW = fd.GradientFlow.for_sweeps(rtol=1e-8, atol=1e-10, max_steps=4000)
T1 = 200.0
STOP = fd.LossBelow(1e-7)
ETA = 0.2


@pytest.fixture(scope="module")
def sweeps():
    common = dict(stop=STOP, instance=INSTANCE, progress=False, chunk_size=8, diagnostics=True)
    flow = fd.sweep(GRID, dynamics=FLOW, t1=T1, **common)
    descent = fd.sweep(GRID, dynamics=fd.GradientDescent(ETA), num_steps=round(T1 / ETA), **common)
    return descent, flow


def _objective(n, m, k, s):
    return INSTANCE.objective(fd.run_key(0, n, m, s), n=n, m=m, k=k, d=GRID.d)


def test_flow_and_descent_cells_use_the_same_initialisation(sweeps):
    descent, flow = sweeps
    # Everything that depends only on (θ₀, A, x̄) is equal in the two sweeps: F(θ₀) bitwise;
    # the eigenvalue problems up to the round-off of two compiled programs (descent sweeps
    # run in segments, flows in one solve), σ₀ with the atol of a square root of an
    # eigenvalue known to ~eps·trace.
    np.testing.assert_array_equal(descent.initial_loss.values, flow.initial_loss.values)
    for name, atol in (("sigma0", 1e-7), ("sharpness0", 1e-12)):
        np.testing.assert_allclose(
            descent[name].values, flow[name].values, rtol=1e-12, atol=atol, err_msg=name
        )
    # ... and equal to the objective drawn from the documented key.
    for k in GRID.k:
        for s in range(GRID.seeds):
            obj = _objective(6, 4, k, s)
            assert float(descent.initial_loss.sel(n=6, m=4, k=k, seed=s)) == pytest.approx(
                float(obj.value(obj.initial_state())), rel=1e-13
            )


def test_flow_sweep_cell_is_a_single_solve(sweeps):
    _, flow = sweeps
    for k in GRID.k:
        for s in range(GRID.seeds):
            obj = _objective(6, 4, k, s)
            traj = fd.solve(obj, FLOW, t1=T1, stop=STOP, num_saves=2, throw=False)
            cell = flow.sel(n=6, m=4, k=k, seed=s)
            assert bool(cell.converged) == bool(traj.converged)
            # Padded to k = 12 with the max-norm controller: the same steps up to round-off.
            assert float(cell.stop_time) == pytest.approx(float(traj.stop_time), rel=1e-6)
            assert float(cell.final_loss) == pytest.approx(float(traj.final_loss), rel=1e-5)
            assert int(cell.num_steps) == int(traj.num_steps)
    assert np.isnan(flow.loss_rose.values).all()  # flows record no loss rise


def test_sharpness_at_initialisation_is_the_dense_hessians_largest_eigenvalue(sweeps):
    descent, _ = sweeps
    for k in GRID.k:
        for s in range(GRID.seeds):
            obj = _objective(6, 4, k, s)
            # Independent: the full W-space objective (no reduced path), dense autodiff Hessian.
            full = fd.Objective(obj.problem, obj.generator, reduced=False)
            flat, unravel = ravel_pytree(full.initial_state())
            hess = jax.hessian(lambda f: full.value(unravel(f)))(flat)
            expected = float(jnp.linalg.eigvalsh(hess)[-1])
            got = float(descent.sharpness0.sel(n=6, m=4, k=k, seed=s))
            assert got == pytest.approx(expected, rel=1e-8)


def test_loss_rose_matches_the_saved_losses():
    # P1's step η = 1 on cells where η·λ_max(θ₀) > 2 (the loss rises in some runs), and a
    # step well below 2/λ_max (it never rises).
    steps = 300
    seen = []
    for s in range(4):
        obj = _objective(38, 10, 100, s)
        lam = float(fd.sharpness(obj, obj.initial_state()).value)
        for eta in (1.0, 0.5 / lam):
            gd = fd.GradientDescent(eta)
            ts = np.arange(steps + 1) * eta
            traj = fd.solve(obj, gd, num_steps=steps, ts=ts, stop=STOP, throw=False)
            loss = np.asarray(traj.loss)[np.asarray(traj.valid)]
            expected = bool(np.any(loss[1:] > (1 + 1e-9) * loss[:-1]))
            assert bool(traj.loss_rose) == expected, (s, eta)
            seen.append((eta == 1.0, expected))
    assert any(e for big, e in seen if big) and not any(e for big, e in seen if not big)
    cell = fd.run_cell(
        INSTANCE,
        fd.GradientDescent(1.0),
        key=fd.run_key(0, 38, 10, 3),
        n=38,
        m=10,
        k=100,
        d=3,
        horizon=steps,
        stop=STOP,
        diagnostics=True,
    )
    assert float(cell["loss_rose"]) == float(seen[-2][1])


def test_disagreement_map_is_zero_where_both_diagrams_agree(sweeps):
    descent, flow = sweeps
    stats = disagreement(descent, flow)
    same = stats["descent"] == stats["flow"]
    assert np.all(stats["difference"][same] == 0)
    assert np.all(stats["difference"][~same] != 0)
    # A hand-made pair: cells where every run agrees, one where they differ.
    dims = ("n", "m", "k", "seed")
    coords = dict(n=[5], m=[3], k=[4, 8], seed=[0, 1])
    a = np.asarray([[[[1, 1], [0, 1]]]], float)
    b = np.asarray([[[[1, 1], [1, 0]]]], float)
    da = xr.Dataset({"converged": (dims, a)}, coords=coords)
    db = xr.Dataset({"converged": (dims, b)}, coords=coords)
    got = disagreement(da, db)
    np.testing.assert_array_equal(got["difference"], [[[0.0, 0.0]]])
    np.testing.assert_array_equal(got["mismatch"], [[[0.0, 1.0]]])  # equal frequencies only
    with pytest.raises(ValueError, match="different k"):
        disagreement(da, db.assign_coords(k=[4, 9]))


def test_diagnostics_off_leave_the_sweep_unchanged():
    assert "sharpness0" not in record.variables(False)
    config = store.config(GRID, INSTANCE, FLOW, T1, STOP, 0, 8, 4.0)
    assert "diagnostics" not in config


def test_sweep_flow_checks_its_arguments():
    with pytest.raises(ValueError, match="rtol"):
        fd.GradientFlow.for_sweeps(rtol=-1.0)
    with pytest.raises(ValueError, match="max_steps"):
        fd.GradientFlow.for_sweeps(max_steps=0)
    with pytest.raises(ValueError, match="norm"):
        fd.GradientFlow(norm="l1")


def test_phase_options_use_the_p1_reproductions_grids_and_check_values(tmp_path):
    from flowdip.experiments import flow_vs_descent_phase as fvdp, ssvm

    for quick in (False, True):
        opts = fvdp.Options(quick_grids=quick, out=tmp_path)
        for figure, cls in (("fig1", ssvm.Fig1Options), ("fig2", ssvm.Fig2Options)):
            mine, theirs = opts.ssvm(figure), (cls.quick() if quick else cls())
            assert mine.grid == theirs.grid and mine.seed == theirs.seed
            assert (mine.max_steps, mine.step_size, mine.tol) == (
                theirs.max_steps,
                theirs.step_size,
                theirs.tol,
            )
    eta = fvdp.Options(step_size=0.5, max_steps=100, out=tmp_path)
    assert eta.ssvm("fig1").step_size == 0.5 and eta.flow(100).max_steps == 100
    with pytest.raises(ValueError, match="figures"):
        fvdp.Options(figures=("fig3",))
    with pytest.raises(ValueError, match="step_size"):
        fvdp.Options(step_size=0.0)
    with pytest.raises(ValueError, match="descent_from"):
        fvdp.Options.quick(figures=("fig1",), descent_from=[tmp_path, tmp_path])
    with pytest.raises(ValueError, match="no such folder"):
        fvdp.Options.quick(figures=("fig1",), descent_from=[tmp_path / "typo"])


def test_command_line_options_reach_the_experiment(tmp_path):
    from flowdip import cli
    from flowdip.experiments import flow_vs_descent_phase as fvdp

    argv = ["reproduce", "flow-vs-descent-phase", "--quick", "--figures", "fig1"]
    argv += ["--step-size", "0.5", "--step-sizes", "0.25,2", "--flow-budget", "300"]
    (tmp_path / "d").mkdir()
    argv += ["--out", str(tmp_path), "--descent-from", str(tmp_path / "d")]
    args = cli._parser().parse_args(argv)
    assert args.experiment in cli.EXPERIMENTS
    assert args.scan == (0.25, 2.0) and args.flow_budget == 300
    opts = fvdp.Options.quick(
        figures=args.figures,
        step_size=0.5,
        scan=args.scan,
        flow_budget=300,
        descent_from=args.descent_from,
    )
    assert opts.descent_folder("fig1") == tmp_path / "d" and opts.flow(2000).max_steps == 300


def test_a_descent_sweep_with_more_seeds_is_reused_for_its_first_seeds(tmp_path):
    # A run's key depends only on (seed, n, m, s), so the first 2 seeds of a 3-seed descent
    # sweep are the runs of a 2-seed sweep: reused, cut, and equal to a fresh 2-seed sweep.
    from flowdip.experiments import flow_vs_descent_phase as fvdp, ssvm

    def options(seeds, **kw):
        base = dict(n=[6], m=[4], k=[5, 12], seeds=seeds, d=3, max_steps=60, step_size=0.2)
        return ssvm.SSVMOptions(**{**base, **kw}, out=tmp_path / f"s{seeds}", progress=False)

    def descent(opts, out):
        kwargs = fvdp._sweep_kwargs(opts, False)
        dyn = fd.GradientDescent(opts.step_size)
        return fd.sweep(opts.grid, dynamics=dyn, num_steps=opts.max_steps, out=out, **kwargs)

    descent(options(3), tmp_path / "three")
    reused = fvdp._reusable(tmp_path / "three", options(2).grid, options(2))
    assert reused is not None and reused.sizes["seed"] == 2
    fresh = descent(options(2), None)
    for name in ("converged", "num_steps", "final_loss", "initial_loss", "sharpness0"):
        np.testing.assert_array_equal(reused[name].values, fresh[name].values, err_msg=name)
    # Not reused: more seeds than the sweep has, another width or another step size.
    assert fvdp._reusable(tmp_path / "three", options(4).grid, options(4)) is None
    other_k = options(2, k=[5, 13])
    assert fvdp._reusable(tmp_path / "three", other_k.grid, other_k) is None
    other_eta = options(2, step_size=0.1)
    assert fvdp._reusable(tmp_path / "three", other_eta.grid, other_eta) is None


def test_a_descent_from_folder_that_cannot_be_reused_is_refused_before_anything_runs(
    tmp_path, capsys
):
    from flowdip import cli
    from flowdip.experiments import flow_vs_descent_phase as fvdp

    (tmp_path / "empty").mkdir()
    opts = fvdp.Options.quick(figures=("fig1",), descent_from=[tmp_path / "empty"])
    with pytest.raises(ValueError, match="holds no finished sweep"):
        fvdp.check_descent_from(opts)
    argv = ["reproduce", "flow-vs-descent-phase", "--quick", "--figures", "fig1"]
    argv += ["--out", str(tmp_path / "out"), "--descent-from", str(tmp_path / "empty")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--descent-from" in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "out" / "fig1").exists()


def test_a_longer_horizon_keeps_every_converged_flow_run(sweeps):
    from flowdip.experiments._phase_horizon import horizon, horizon_statistics

    _, flow = sweeps
    common = dict(stop=STOP, instance=INSTANCE, progress=False, chunk_size=8)
    long = fd.sweep(GRID, dynamics=FLOW, t1=10 * T1, **common)
    assert horizon(flow) == T1 and horizon(long) == 10 * T1
    h = horizon_statistics(flow, long, GRID.seeds)
    # A run that converges by T1 takes the same steps whatever the horizon beyond its stop.
    assert np.all(h["lost"] == 0)
    short = flow["converged"].values.astype(bool)
    both = short & long["converged"].values.astype(bool)
    np.testing.assert_array_equal(flow["stop_time"].values[both], long["stop_time"].values[both])
    np.testing.assert_allclose(h["long"], h["short"] + h["gained"])
    assert np.all(h["at_horizon"] + h["budget"] <= 1 - h["long"] + 1e-12)


def test_failing_descent_measurements_equal_single_solves():
    # The batched re-run (padded in n and k) against single solves of the same runs.
    from flowdip.experiments import _phase_failing as pf

    runs = [(6, 0, 5), (9, 1, 12)]
    keys = jnp.stack([fd.run_key(0, n, 4, s) for n, s, _ in runs])
    res = pf._batch(
        keys, jnp.asarray([6, 9]), jnp.asarray([5, 12]), scaling="unit", n=9, m=4, k=64, d=3,
        eta=0.2, tol=1e-12, cap=60, window=20, factor=3,
    )  # fmt: skip
    for i, (n, s, k) in enumerate(runs):
        obj = fd.Instance().objective(fd.run_key(0, n, 4, s), n=n, m=4, k=k, d=3)
        tr = fd.solve(obj, fd.GradientDescent(0.2), num_steps=60, ts=np.array([8.0, 12.0]))
        z = obj.generator.z + tr.params[1] * jnp.sqrt(obj.u_norm2)
        np.testing.assert_allclose(res["loss_before"][i], tr.loss[0], rtol=1e-10)
        np.testing.assert_allclose(res["loss_cap"][i], tr.loss[1], rtol=1e-10)
        np.testing.assert_allclose(res["lam_cap"][i], fd.sharpness(obj, z).value, rtol=1e-8)
        assert float(res["saturated"][i]) == float(jnp.mean(jnp.abs(z) > pf.SATURATED))
        long = fd.solve(obj, fd.GradientDescent(0.2), num_steps=180, stop=fd.LossBelow(1e-12))
        assert int(res["steps_long"][i]) == int(long.num_steps)
