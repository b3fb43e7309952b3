"""Recovery quantities, the certificate plots, the worked examples and `gd-overparam`."""

import jax.numpy as jnp
import jax.random as jr
import matplotlib.pyplot as plt
import numpy as np
import pytest

import flowdip as fd
from flowdip._linalg import signal_map
from flowdip.cli import main
from flowdip.experiments import certificates as examples


def _realizable(seed=0, shift=0.05):
    """`x̄ = g(u, θ₀ + δ)` with `‖δ‖ = shift`: inside `Σ'` for any radius ≥ shift."""
    obj = examples.near_objective(jr.key(seed), n=6, m=3, k=60, d=5, eps=0.0)
    p = obj.generator.width
    delta = jr.normal(jr.key(seed + 100), (p,))
    delta = shift * delta / jnp.linalg.norm(delta)
    x = signal_map(obj)(delta)
    problem = fd.InverseProblem(obj.problem.matrix, x)
    return fd.Objective(problem, obj.generator), delta


def test_projection_onto_the_reachable_set():
    obj, delta = _realizable()
    x_true = obj.problem.x_true
    g0 = obj.signal(obj.initial_state())
    # Radius 0: Σ' is the single point g(θ₀).
    x0, c0 = fd.project_onto_reachable(obj, x_true, 0.0, num_iters=50)
    assert np.allclose(x0, g0) and float(jnp.linalg.norm(c0)) == 0.0
    # A ball that holds δ: x̄ is reachable, the distance found is ~0.
    x1, c1 = fd.project_onto_reachable(obj, x_true, 2 * float(jnp.linalg.norm(delta)))
    assert float(jnp.linalg.norm(x1 - x_true)) < 1e-6 * float(jnp.linalg.norm(g0 - x_true))
    # A smaller ball: the point stays in it and is no farther than g(θ₀).
    r = 0.5 * float(jnp.linalg.norm(delta))
    x2, c2 = fd.project_onto_reachable(obj, x_true, r)
    assert float(jnp.linalg.norm(c2)) <= r * (1 + 1e-12)
    assert float(jnp.linalg.norm(x2 - x_true)) < float(jnp.linalg.norm(g0 - x_true))


def test_recovery_bound_holds_when_R_prime_below_R():
    obj, _ = _realizable(shift=0.05)
    cert = fd.certify(obj)
    assert bool(cert.condition_flow)
    traj = fd.solve(obj, fd.GradientFlow(), t1=300.0, num_saves=101)
    rec = fd.recovery(obj, traj, fd.certify(obj, trajectory=traj))
    ok = np.asarray(rec.valid)
    assert bool(rec.condition)
    assert float(rec.dist) < 1e-6  # realizable, noise-free
    # No noise: nothing to stop early for, t* = ∞.
    assert float(rec.noise_norm) == 0.0 and float(rec.early_stopping_time) == np.inf
    assert np.all(np.asarray(rec.error)[ok] <= np.asarray(rec.bound)[ok] * (1 + 1e-9))
    # μ estimates: the trajectory minimum is at most the final pair.
    assert 0 < float(rec.mu_traj) <= float(rec.mu_pair) * (1 + 1e-9)
    ax = fd.plot.recovery(rec)
    assert "holds" in ax.get_title()
    plt.close("all")


@pytest.mark.slow
def test_noisy_example_error_falls_then_rises(tmp_path):
    paths = examples.early_stopping(tmp_path, quick=True)
    assert paths["figure"].stat().st_size > 1000
    text = paths["summary"].read_text()
    first, best, final = (
        float(text.split(word)[1].split()[0].strip(","))
        for word in ("initial error", "best", "final")
    )
    assert best < 0.8 * first and final > 1.2 * best
    assert "t* =" in text


def test_certificate_plot_has_three_panels():
    obj, _ = _realizable(shift=0.05)
    cert = fd.certify(obj)
    gd = fd.solve(obj, fd.GradientDescent(cert.step_size), num_steps=150, num_saves=151)
    fig = fd.plot.certificate(fd.certify(obj, trajectory=gd))
    axes = fig.get_axes()
    assert len(axes) == 3 and axes[0].get_yscale() == "log"
    labels = [t.get_text() for t in axes[1].get_legend().get_texts()]
    assert any("R'_GD" in label for label in labels)
    labels = [t.get_text() for t in axes[2].get_legend().get_texts()]
    assert any("floor" in label for label in labels)
    with pytest.raises(ValueError, match="trajectory"):
        fd.plot.certificate(cert)
    plt.close("all")


def test_width_curves_interpolate_in_log_log():
    import xarray as xr

    n = [10, 40]
    values = np.asarray([[[100.0, 100.0]], [[1600.0, 1600.0]]])  # k = n²
    ds = xr.Dataset(
        {"width_threshold_descent": (("n", "m", "seed"), values)},
        coords=dict(n=n, m=[5], seed=[0, 1]),
    )
    (curve,) = fd.certified_width_curves(ds, "n", which=["width_threshold_descent"]).values()
    assert np.allclose(curve(np.asarray([10.0, 20.0, 80.0])), [100.0, 400.0, 6400.0])


@pytest.mark.slow
def test_reproduce_gd_overparam_tiny_grid(tmp_path, capsys):
    out = tmp_path / "over"
    # The smallest grid: two rows per diagram (so that both sweeps share one compiled program,
    # --quick pads them alike), two widths, two seeds.
    argv = ["reproduce", "gd-overparam", "--quick", "--n", "6,8", "--m", "2,3", "--k", "8,16"]
    assert (
        main([*argv, "--seeds", "2", "--max-steps", "100", "--no-progress", "--out", str(out)]) == 0
    )
    printed = capsys.readouterr().out
    for name in ("gd-overparam.png", "summary.txt", "certificates_n.nc"):
        assert (out / name).exists() and str(out / name) in printed
    summary = (out / "summary.txt").read_text()
    assert "certified k_thr/c_γ²" in summary
    certs = fd.load_dataset(out / "certificates_n.nc")
    # Descent's threshold is the flow's divided by c_γ² with c_γ ≥ ½ at the common step.
    ratio = certs.width_threshold_descent / certs.width_threshold
    assert np.all((ratio >= 1) & (ratio <= 4 + 1e-9))
    assert main(["reproduce", "gd-overparam", "--shard", "0/2"]) == 2
