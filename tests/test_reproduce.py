"""`flowdip reproduce` (the P1 figures) and `flowdip.plot.phase_diagram` on hand-made data."""

import os
import subprocess
import sys

import matplotlib.collections
import matplotlib.contour
import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr

import flowdip as fd
import flowdip.plot as fplot
from flowdip import load_dataset
from flowdip.cli import main
from flowdip.experiments import reproduce, ssvm


def _dataset(freq: np.ndarray, n, m, k, seeds: int) -> xr.Dataset:
    """A sweep-like dataset whose cell `(n, m, k)` has `round(freq · seeds)` successes."""
    wins = np.round(np.asarray(freq) * seeds)[..., None]
    converged = (np.arange(seeds) < wins).astype(float)
    return xr.Dataset(
        {"converged": (("n", "m", "k", "seed"), converged)},
        coords=dict(n=list(n), m=list(m), k=list(k), seed=np.arange(seeds)),
    )


def _quadratic(c: float, n, k, seeds: int) -> xr.Dataset:
    # Per-seed thresholds spread symmetrically (in log) around c·n²: the median run needs
    # exactly k = c·n², so the 50% line is k = c·n².
    spread = np.linspace(-1.0, 1.0, seeds)
    need = c * np.asarray(n, float)[:, None, None] ** 2 * np.exp(spread)[None, None, :]
    converged = (np.asarray(k, float)[None, :, None] >= need).astype(float)
    return xr.Dataset(
        {"converged": (("n", "m", "k", "seed"), converged[:, None])},
        coords=dict(n=list(n), m=[10], k=list(k), seed=np.arange(seeds)),
    )


def _mesh(ax) -> matplotlib.collections.QuadMesh:
    (mesh,) = [c for c in ax.collections if isinstance(c, matplotlib.collections.QuadMesh)]
    return mesh


def _has_contour(ax) -> bool:
    return any(isinstance(c, matplotlib.contour.ContourSet) for c in ax.collections)


def test_phase_diagram_cells_contour_and_title():
    n, k = [10, 20, 40, 80], [8, 16, 32, 64, 128, 256]
    freq = np.clip((np.log2(k)[None, :] - np.log2(n)[:, None]) / 3 + 0.5, 0, 1)
    ds = _dataset(freq[:, None, :], n, [10], k, seeds=6)
    ax = fplot.phase_diagram(ds)
    assert _mesh(ax).get_array().size == len(n) * len(k)
    assert np.allclose(_mesh(ax).get_array().reshape(len(n), len(k)), np.round(freq * 6) / 6)
    assert _has_contour(ax)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_xlabel() == "width k" and ax.get_ylabel() == "signal size n"
    assert "runs per cell: 6" in ax.get_title()
    # Every cell is centred on its true grid value.
    x0, x1 = ax.get_xlim()
    assert x0 < 8 and x1 > 256 and np.isclose(np.sqrt(x0 * x1), np.sqrt(8 * 256))
    plt.close("all")


def test_phase_diagram_without_crossing_has_no_contour_and_y_defaults_to_m():
    m, k = [2, 4, 8], [4, 16, 64]
    ds = _dataset(np.ones((1, 3, 3)), [40], m, k, seeds=3)
    ax = fplot.phase_diagram(ds, log=False)
    assert ax.get_ylabel() == "measurements m" and ax.get_xscale() == "linear"
    assert _mesh(ax).get_array().size == 9
    assert not _has_contour(ax)
    plt.close("all")


def test_phase_diagram_fits_a_quadratic_transition():
    n = [8, 12, 18, 27, 40, 60, 90]
    k = np.unique(np.round(np.geomspace(2, 1e5, 300)).astype(int))
    ds = _quadratic(0.3, n, k, seeds=21)
    ax = fplot.phase_diagram(ds, theory="k ∝ n²")
    fit = fd.fit_transition(ds, "k ∝ n²")
    c, free, used = fit.coefficient, fit.free_exponent, fit.rows_used
    assert used == len(n)
    assert abs(c / 0.3 - 1) < 0.1
    assert abs(free - 2) < 0.1
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(f"{c:.3g}" in label and "n²" in label for label in labels)
    assert "50% success" in labels
    # A user-given line is drawn with its label.
    ax = fplot.phase_diagram(ds, theory={"k = n²": lambda v: v**2})
    assert "k = n²" in [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close("all")


def test_phase_diagram_rejects_three_varying_dims_and_a_wrong_law():
    ds = _dataset(np.full((2, 2, 2), 0.5), [10, 20], [5, 10], [8, 16], seeds=2)
    with pytest.raises(ValueError, match="varies in 3"):
        fplot.phase_diagram(ds)
    with pytest.raises(ValueError, match="needs y='m'"):
        fplot.phase_diagram(ds.isel(m=[0]), theory="k ∝ m")
    with pytest.raises(ValueError, match="Unknown theory law"):
        fplot.phase_diagram(ds.isel(m=[0]), theory="k ∝ n³")
    plt.close("all")


def test_transition_widths_are_the_first_cell_at_half():
    freq = np.asarray([[0.0, 0.4, 0.5, 1.0], [0.6, 1.0, 1.0, 1.0], [0.0, 0.1, np.nan, 0.2]])
    widths = fd.transition_widths(freq, np.asarray([1.0, 2.0, 4.0, 8.0]))
    assert widths[0] == 4.0 and np.isnan(widths[1]) and np.isnan(widths[2])


@pytest.mark.slow
def test_reproduce_ssvm_fig1_quick_writes_dataset_and_figure(tmp_path):
    # The command as a user runs it, in its own process.
    out = tmp_path / "fig1"
    command = [sys.executable, "-m", "flowdip", "reproduce", "ssvm-fig1", "--quick"]
    env = {**os.environ, "MPLBACKEND": "Agg", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [*command, "--out", str(out)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    for name in ("results.nc", "ssvm-fig1.png", "summary.txt"):
        path = out / name
        assert path.exists() and path.stat().st_size > 500, name
        assert str(path) in done.stdout
    assert "sweep:" in done.stderr and "100/100" in done.stderr  # the progress bar
    ds = load_dataset(out / "results.nc")
    assert dict(ds.sizes) == dict(n=5, m=1, k=5, seed=4) and ds.attrs["complete"] == 1
    assert set(np.unique(ds.converged.values)) <= {0.0, 1.0}
    # Success is rare at the smallest width and common at the largest (the transition is
    # inside the quick grid).
    freq = ds.converged.mean("seed")
    assert float(freq.isel(k=0).mean()) < 0.5 < float(freq.isel(k=-1).mean())
    # The same folder with other arguments: refused (nothing is run), --fresh named.
    again = subprocess.run(
        [*command, "--seeds", "3", "--out", str(out)], capture_output=True, text=True, env=env
    )
    assert again.returncode == 2 and "--fresh" in again.stderr


def test_reproduce_in_process_shards_merge_and_resume(tmp_path):
    # A tiny grid through the Python API, with the type checker on: two shards (chunks of
    # two runs, so both shards share one compiled program), then merged.
    def options(out, **kw):
        return ssvm.Fig2Options(
            **dict(n=6, m=2, k=(4, 8), seeds=2, max_steps=40, chunk_size=2) | kw,
            out=out,
            progress=False,
        )

    def run(opts, **kw):
        return reproduce("ssvm-fig2", opts, log=lambda s: None, **kw)

    for i in range(2):
        paths = run(options(tmp_path / f"shard{i}", shard=(i, 2)))
        assert list(paths) == ["dataset"] and paths["dataset"].exists()
        assert load_dataset(paths["dataset"]).attrs["complete"] == 0
    merged = [tmp_path / "shard0", tmp_path / "shard1"]
    paths = run(options(tmp_path / "merged", merge=merged))
    assert set(paths) == {"dataset", "figure", "summary"}
    assert paths["figure"].name == "ssvm-fig2.png" and paths["figure"].stat().st_size > 500
    ds = load_dataset(paths["dataset"])
    assert ds.attrs["complete"] == 1 and dict(ds.sizes) == dict(n=1, m=1, k=2, seed=2)
    assert "k ∝ m" in paths["summary"].read_text()
    # Resuming a finished shard runs nothing; with other arguments the folder is refused.
    with pytest.raises(ValueError, match="resume"):
        run(options(tmp_path / "shard0", shard=(0, 2), seeds=3))
    run(options(tmp_path / "shard0", shard=(0, 2)))


def test_reproduce_rejects_bad_options(tmp_path, capsys):
    for bad in ("4/4", "1", "a/b", "-1/3"):
        with pytest.raises(SystemExit):
            main(["reproduce", "ssvm-fig1", f"--shard={bad}"])
        assert "0 <= i < N" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["reproduce", "ssvm-fig2", "--seeds", "0"])
    assert "positive" in capsys.readouterr().err
    assert main(["reproduce", "ssvm-fig2", "--merge", str(tmp_path)]) == 2
    assert "--out" in capsys.readouterr().err


@pytest.mark.slow
def test_flow_vs_descent_quick_writes_its_figures(tmp_path, capsys):
    assert main(["reproduce", "flow-vs-descent", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("order.png", "sharpness.png", "inertial.png", "baselines.png", "summary.txt"):
        path = tmp_path / name
        assert path.exists() and path.stat().st_size > 500, name
        assert str(path) in out
    summary = (tmp_path / "summary.txt").read_text()
    slope_flow = float(summary.split("slope_flow: ")[1].split()[0])
    slope_modified = float(summary.split("slope_modified: ")[1].split()[0])
    assert abs(slope_flow - 1) < 0.2 and abs(slope_modified - 2) < 0.2
