"""`flowdip reproduce images`: options, and a tiny run of the experiment end to end."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree


pytest.importorskip("skimage")

import flowdip as fd  # noqa: E402
from flowdip.cli import main  # noqa: E402
from flowdip.experiments import images  # noqa: E402


def test_test_images_are_downscaled_to_the_unit_range():
    for name in images.IMAGES:
        image = images.load_image(name, 24)
        assert image.shape == (24, 24) and image.min() == 0.0 and image.max() == 1.0


def test_options_and_command_line_reject_bad_values(capsys):
    with pytest.raises(ValueError, match="Unknown operators"):
        images.Options(operators=("radon",))
    with pytest.raises(ValueError, match="num_saves"):
        images.Options(steps=5, num_saves=10)
    with pytest.raises(ValueError, match="float32"):
        images.Options(flow_rtol=1e-8)
    with pytest.raises(ValueError, match="Unknown flow_solver"):
        images.Options(flow_solver="euler")
    with pytest.raises(ValueError, match="adam_steps must be an integer >= 1"):
        images.Options(adam_steps=0)
    with pytest.raises(ValueError, match="adam_lr must be a finite number > 0"):
        images.Options(adam_lr=float("nan"))
    with pytest.raises(ValueError, match="two_layer_steps must be an integer >= 1"):
        images.Options(two_layer_steps=0)
    assert main(["reproduce", "images", "--seeds", "3"]) == 2
    assert "--seeds" in capsys.readouterr().err
    # --max-steps sets the descent steps, checked like any option (16 saves need 15 steps).
    assert main(["reproduce", "images", "--quick", "--max-steps", "3"]) == 2
    assert "num_saves=16 exceeds steps + 1 = 4" in capsys.readouterr().err


def test_step_size_curvature_is_the_dense_hessians_top_eigenvalue():
    # η = 1.9/L̂ needs L̂ = λ_max itself (the 64×64 nets have a negative eigenvalue nearly as
    # large, where the power iteration used before returned a ninth of it). Float64, a net
    # small enough for the dense Hessian.
    net = fd.ConvDIP.init(
        jr.key(0), image_shape=(8, 8), channels=3, num_upsamples=1, dtype=jnp.float64
    )
    x = jnp.asarray(images.load_image("camera", 8).reshape(-1), jnp.float64)
    op = fd.CompressedSensing.gaussian(jr.key(1), (8, 8), 32, dtype=jnp.float64)
    objective = fd.Objective(fd.InverseProblem(op, x), net)
    theta0 = objective.initial_state()
    flat, unravel = ravel_pytree(theta0)
    hessian = jax.hessian(lambda f: objective.value(unravel(f)))(flat)
    eigenvalues = np.linalg.eigvalsh(np.asarray(hessian))
    init = jr.normal(jr.key(2), flat.shape, flat.dtype)  # as the experiment draws it
    estimate = float(fd.sharpness(objective, theta0, num_iters=40, init=init).value)
    assert np.isclose(estimate, eigenvalues[-1], rtol=1e-8)


@pytest.mark.slow
def test_tiny_run_writes_figures_table_and_metrics(tmp_path):
    # The --quick options, shrunk further: 8×8 images, one image and noise level.
    options = images.Options.quick(
        size=8,
        images=("phantom",),
        noise_levels=(0.05,),
        channels=2,
        num_upsamples=1,
        steps=8,
        adam_steps=8,
        num_saves=3,
        two_layer_k=16,
        out=tmp_path,
    )
    lines = []
    paths = images.run(options, log=lines.append)
    for name in ("curves", "grid", "spectra", "summary", "metrics"):
        assert paths[name].exists() and paths[name].stat().st_size > 200
    assert any("compressed sensing" in line for line in lines)
    assert any("Gaussian blur" in line for line in lines)
    data = np.load(paths["metrics"])
    truth = images.load_image("phantom", 8)
    for op in ("cs", "blur"):
        for run in ("ConvDIP_GD", "ConvDIP_GF", "ConvDIP_Adam", "two-layer_GD"):
            err = data[f"{op}/{run}/relative_error"]
            assert err.shape == (1, 3) and np.all(np.isfinite(err))
            psnr = data[f"{op}/{run}/psnr"]
            # PSNR and relative error are two views of one distance: PSNR = −20 log₁₀ RMSE.
            rmse = err * np.linalg.norm(truth) / 8
            np.testing.assert_allclose(psnr, -20 * np.log10(rmse), rtol=1e-4)
        # Descent does not increase the loss at η = 1/L̂ on this tiny problem.
        loss = data[f"{op}/ConvDIP_GD/loss"][0]
        assert loss[-1] <= loss[0]
    summary = paths["summary"].read_text()
    assert "κ(A)" in summary and "ConvDIP GF" in summary and "ConvDIP Adam" in summary
    assert "oracle diagonal filter" in summary
    # Saves at geometrically spaced steps 0, 1, …, steps (3 saves of 8 steps: 0, 1, 8), and
    # Adam's at its own (as many steps in this test).
    saved = np.load(paths["data"])
    for run, step in (("ConvDIP_GD", "eta"), ("ConvDIP_Adam", None)):
        ts = data[f"cs/{run}/ts"][0]
        size = saved["results/cs/eta"] if step else options.adam_lr
        np.testing.assert_allclose(ts / size, [0, 1, 8], rtol=1e-5)
