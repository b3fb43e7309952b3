"""A table of bad inputs over the public API and the command line: each must give a clear
error (`ValueError`/`TypeError`) that names the argument, or for the command line exit code 2
with one line on stderr and no traceback. Everything here is tiny: no case runs a solve."""

import functools
import pathlib

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import flowdip as fd
from flowdip.cli import main


E = (TypeError, ValueError)
NAN, INF = float("nan"), float("inf")

# -- tiny objects, built once -------------------------------------------------------------------
KEY = jr.key(0)
A = jr.normal(jr.key(1), (4, 6))
X = jr.normal(jr.key(2), (6,))
PROBLEM = fd.InverseProblem(A, X)
NET = fd.TwoLayerDIP.init(jr.key(3), d=3, k=5, n=6)
OBJ = fd.Objective(PROBLEM, NET)
GRID = fd.Grid(n=[6], m=[4], k=[5], seeds=1, d=3)
GD = fd.GradientDescent(0.5)


@functools.cache
def runs():
    """A flow and two descents on `OBJ`, and a descent on another objective (5 steps each)."""
    gd = fd.solve(OBJ, GD, num_steps=4, num_saves=5)
    gd2 = fd.solve(OBJ, fd.GradientDescent(0.25), num_steps=6, num_saves=5)
    flow = fd.solve(OBJ, fd.GradientFlow(rtol=1e-6, atol=1e-8), t1=2.0, ts=gd.ts)
    other = fd.Objective(fd.InverseProblem(2 * A, X), NET)
    flow_other = fd.solve(other, fd.GradientFlow(rtol=1e-6, atol=1e-8), t1=2.0, ts=gd.ts)
    return dict(gd=gd, gd2=gd2, flow=flow, flow_other=flow_other)


def run(name):
    return runs()[name]


def arg(name, message):
    """`message` (flowdip's own check) or the runtime type checker's naming of `name` (when
    the tests run with it, it sees the argument first)."""
    return f"{message}|parameter '{name}'"


def cases():
    c = []

    def add(name, fn, exc, match):
        c.append(pytest.param(fn, exc, match, id=name))

    # InverseProblem
    add(
        "A-complex",
        lambda: fd.InverseProblem(A.astype(complex), X),
        TypeError,
        arg("A", "A must be real"),
    )
    add(
        "A-empty", lambda: fd.InverseProblem(jnp.zeros((0, 6)), X), ValueError, "A must have m >= 1"
    )
    add(
        "A-empty-cols",
        lambda: fd.InverseProblem(jnp.zeros((4, 0)), y=jnp.zeros(4)),
        ValueError,
        "A must have",
    )
    add("A-1d", lambda: fd.InverseProblem(X, X), E, arg("A", "A must be a matrix"))
    add("A-3d", lambda: fd.InverseProblem(A[None], X), E, arg("A", "A must be a matrix"))
    add("A-bool", lambda: fd.InverseProblem(A > 0, X), TypeError, arg("A", "A must be a real"))
    add("A-string", lambda: fd.InverseProblem("A", X), E, "A")
    add("A-None", lambda: fd.InverseProblem(None, X), E, "A")
    add("A-nan", lambda: fd.InverseProblem(A.at[0, 0].set(NAN), X), ValueError, "A contains")
    add("A-inf", lambda: fd.InverseProblem(A.at[0, 0].set(INF), X), ValueError, "A contains")
    add("x-shape", lambda: fd.InverseProblem(A, X[:5]), E, arg("x_true", "x_true has shape"))
    add("x-nan", lambda: fd.InverseProblem(A, X.at[0].set(NAN)), ValueError, "x_true contains")
    add(
        "x-complex",
        lambda: fd.InverseProblem(A, X.astype(complex)),
        TypeError,
        arg("x_true", "x_true must be real"),
    )
    add("x-string", lambda: fd.InverseProblem(A, "x"), E, "x_true")
    add("y-shape", lambda: fd.InverseProblem(A, y=jnp.zeros(5)), E, arg("y", "y has shape"))
    add("y-inf", lambda: fd.InverseProblem(A, y=jnp.full(4, INF)), ValueError, "y contains")
    add(
        "y-complex",
        lambda: fd.InverseProblem(A, y=jnp.zeros(4, complex)),
        TypeError,
        arg("y", "y must be"),
    )
    add("no-x-no-y", lambda: fd.InverseProblem(A), ValueError, "x_true")
    add("noise-neg", lambda: fd.InverseProblem(A, X, noise_std=-1.0), ValueError, "noise_std")
    add("noise-nan", lambda: fd.InverseProblem(A, X, noise_std=NAN), ValueError, "noise_std")
    add("noise-inf", lambda: fd.InverseProblem(A, X, noise_std=INF), ValueError, "noise_std")
    add("noise-bool", lambda: fd.InverseProblem(A, X, noise_std=True), TypeError, "noise_std")
    add("noise-str", lambda: fd.InverseProblem(A, X, noise_std="0.1"), TypeError, "noise_std")
    add("noise-nokey", lambda: fd.InverseProblem(A, X, noise_std=0.1), ValueError, "key")
    cs = fd.InverseProblem.compressed_sensing
    add("cs-m0", lambda: cs(KEY, 0, 6), ValueError, "m must be an integer >= 1; got m=0")
    add("cs-m-neg", lambda: cs(KEY, -3, 6), ValueError, "m=-3")
    add("cs-n-float", lambda: cs(KEY, 4, 6.0), E, "n")
    add("cs-m-bool", lambda: cs(KEY, True, 6), E, "m")
    add("cs-m-str", lambda: cs(KEY, "4", 6), E, "m")
    add("cs-scaling", lambda: cs(KEY, 4, 6, scaling="1/n"), ValueError, "scaling")
    add("cs-signal", lambda: cs(KEY, 4, 6, signal="box"), ValueError, "signal")
    add("cs-noise", lambda: cs(KEY, 4, 6, noise_std=-0.1), ValueError, "noise_std")
    add("fo-y-shape", lambda: fd.InverseProblem.from_observation(A, X), E, "y")

    # imaging operators
    add("cs-op-shape", lambda: fd.CompressedSensing.gaussian(KEY, (0, 3), 4), E, "image_shape")
    add("cs-op-shape3", lambda: fd.CompressedSensing.gaussian(KEY, (2, 2, 2), 4), E, "image_shape")
    add("cs-op-shape-f", lambda: fd.CompressedSensing.gaussian(KEY, (2.5, 2), 4), E, "image_shape")
    add("cs-op-m0", lambda: fd.CompressedSensing.gaussian(KEY, (3, 3), 0), E, "m")
    add("cs-op-m-f", lambda: fd.CompressedSensing.gaussian(KEY, (3, 3), 2.5), E, "m")
    add("inp-frac0", lambda: fd.Inpainting.random(KEY, (3, 3), 0.0), ValueError, "fraction")
    add("inp-frac2", lambda: fd.Inpainting.random(KEY, (3, 3), 2.0), ValueError, "fraction")
    add("inp-frac-nan", lambda: fd.Inpainting.random(KEY, (3, 3), NAN), E, "fraction")
    add("inp-empty", lambda: fd.Inpainting(jnp.zeros(0, int), (3, 3)), E, "indices")
    add("inp-dup", lambda: fd.Inpainting(jnp.array([1, 1]), (3, 3)), E, "indices")
    add("inp-out", lambda: fd.Inpainting(jnp.array([1, 99]), (3, 3)), E, "indices")
    add("den-shape", lambda: fd.Denoising((-1, 3)), E, "image_shape")
    add("den-str", lambda: fd.Denoising("ab"), E, "image_shape")
    add("blur-sigma0", lambda: fd.Blur.gaussian((8, 8), 0.0), E, "sigma")
    add("blur-sigma-nan", lambda: fd.Blur.gaussian((8, 8), NAN), E, "sigma")
    add("blur-even", lambda: fd.Blur(jnp.ones((2, 2)), (8, 8)), E, "kernel")
    add("blur-big", lambda: fd.Blur(jnp.ones((9, 9)), (4, 4)), E, "kernel")
    add("blur-method", lambda: fd.Blur(jnp.ones((3, 3)), (8, 8), method="fast"), E, "method")
    add("rel-noise-neg", lambda: fd.relative_noise_std(A @ X, -0.1), E, "level")

    # generators
    two = fd.TwoLayerDIP.init
    add("tl-k0", lambda: two(KEY, d=3, k=0, n=6), ValueError, "k must be an integer >= 1")
    add("tl-k-neg", lambda: two(KEY, d=3, k=-2, n=6), ValueError, "k=-2")
    add("tl-k-float", lambda: two(KEY, d=3, k=5.0, n=6), E, "k")
    add("tl-k-bool", lambda: two(KEY, d=3, k=True, n=6), E, "k")
    add("tl-n-str", lambda: two(KEY, d=3, k=5, n="6"), E, "n")
    add("tl-d0", lambda: two(KEY, d=0, k=5, n=6), ValueError, "d must")
    add("tl-d-np-float", lambda: two(KEY, d=np.float64(3), k=5, n=6), E, "d")
    add("tl-vlaw", lambda: two(KEY, d=3, k=5, n=6, v_law="cauchy"), ValueError, "law")
    add(
        "tl-act-str", lambda: two(KEY, d=3, k=5, n=6, activation="sigmoid"), TypeError, "activation"
    )
    add(
        "tl-act-cls",
        lambda: two(KEY, d=3, k=5, n=6, activation=fd.Sigmoid),
        TypeError,
        "activation",
    )
    add("tl-act-fn", lambda: two(KEY, d=3, k=5, n=6, activation=jnp.tanh), TypeError, "activation")
    add(
        "tl-u-shape",
        lambda: fd.TwoLayerDIP(u=NET.u[:2], W=NET.W, V=NET.V),
        E,
        arg("W", "u has shape"),
    )
    add(
        "tl-V-shape", lambda: fd.TwoLayerDIP(u=NET.u, W=NET.W, V=NET.V[:, :4]), E, arg("V", "V has")
    )
    add("tl-W-1d", lambda: fd.TwoLayerDIP(u=NET.u, W=NET.u, V=NET.V), E, "W")
    add("tl-W-empty", lambda: fd.TwoLayerDIP(u=NET.u, W=NET.W[:0], V=NET.V[:, :0]), E, "k|W")
    mlp = fd.MLP.init
    add("mlp-widths0", lambda: mlp(KEY, d=3, widths=[4, 0], n=6), ValueError, r"widths\[1\]")
    add("mlp-widths-f", lambda: mlp(KEY, d=3, widths=[4.5], n=6), E, "widths")
    add("mlp-n0", lambda: mlp(KEY, d=3, widths=[4], n=0), ValueError, "n must")
    add(
        "mlp-act",
        lambda: mlp(KEY, d=3, widths=[4], n=6, activation="tanh"),
        TypeError,
        "activation",
    )
    add("mlp-noweights", lambda: fd.MLP(u=NET.u, weights=()), ValueError, "weight")
    add("mlp-badweights", lambda: fd.MLP(u=NET.u, weights=(NET.W.T,)), ValueError, r"weights\[0\]")
    conv = fd.ConvDIP.init
    add("conv-shape1", lambda: conv(KEY, image_shape=(8,)), E, "image_shape")
    add("conv-shape0", lambda: conv(KEY, image_shape=(8, 0)), E, r"image_shape\[1\]")
    add("conv-shape-str", lambda: conv(KEY, image_shape="88"), E, "image_shape")
    add("conv-ups-neg", lambda: conv(KEY, image_shape=(8, 8), num_upsamples=-1), E, "num_upsamples")
    add("conv-ups-f", lambda: conv(KEY, image_shape=(8, 8), num_upsamples=1.5), E, "num_upsamples")
    add("conv-ch0", lambda: conv(KEY, image_shape=(8, 8), channels=0), E, r"channels\[0\]")
    add("conv-ch-len", lambda: conv(KEY, image_shape=(8, 8), channels=[4, 4]), E, "channels")
    add("conv-out0", lambda: conv(KEY, image_shape=(8, 8), out_channels=0), E, "out_channels")
    add("conv-scale0", lambda: conv(KEY, image_shape=(8, 8), input_scale=0.0), E, "input_scale")
    add("conv-scale-nan", lambda: conv(KEY, image_shape=(8, 8), input_scale=NAN), E, "input_scale")
    add(
        "conv-act",
        lambda: conv(KEY, image_shape=(8, 8), activation="relu"),
        TypeError,
        "activation",
    )
    add(
        "conv-out-act",
        lambda: conv(KEY, image_shape=(8, 8), output_activation=jnp.tanh),
        TypeError,
        "output_activation",
    )
    add("sample-V-k0", lambda: fd.sample_V(KEY, 6, 0), E, "k")
    add("sample-W-d0", lambda: fd.sample_W(KEY, 5, 0), E, "d")
    add("sphere-d0", lambda: fd.uniform_on_sphere(KEY, 0), E, "d")

    # losses
    add("power-p1", lambda: fd.PowerLoss(1.0), ValueError, "p > 1")
    add("power-nan", lambda: fd.PowerLoss(NAN), ValueError, "p")
    add("power-str", lambda: fd.PowerLoss("2"), E, "p")
    add("huber-0", lambda: fd.Huber(0.0), ValueError, "delta")
    add("huber-inf", lambda: fd.Huber(INF), ValueError, "delta")
    add("phuber-neg", lambda: fd.PseudoHuber(-1.0), ValueError, "delta")
    add("phuber-none", lambda: fd.PseudoHuber(None), E, "delta")

    # Objective
    add("obj-problem", lambda: fd.Objective(A, NET), E, "problem")
    add("obj-generator", lambda: fd.Objective(PROBLEM, "net"), E, "generator")
    add("obj-loss", lambda: fd.Objective(PROBLEM, NET, "mse"), E, "loss")
    add("obj-n", lambda: fd.Objective(PROBLEM, two(KEY, d=3, k=5, n=7)), ValueError, "shape")
    add(
        "obj-reduced",
        lambda: fd.Objective(PROBLEM, mlp(KEY, d=3, widths=[4], n=6), reduced=True),
        ValueError,
        "reduced",
    )

    # dynamics
    add("gd-True", lambda: fd.GradientDescent(True), TypeError, "step_size")
    add("gd-False", lambda: fd.GradientDescent(False), TypeError, "step_size")
    add("gd-np-bool", lambda: fd.GradientDescent(np.True_), TypeError, "step_size")
    add("gd-0", lambda: fd.GradientDescent(0.0), ValueError, "step_size must be a finite")
    add("gd-neg", lambda: fd.GradientDescent(-0.1), ValueError, "step_size=-0.1")
    add("gd-nan", lambda: fd.GradientDescent(NAN), ValueError, "step_size=nan")
    add("gd-inf", lambda: fd.GradientDescent(INF), ValueError, "step_size=inf")
    add("gd-complex", lambda: fd.GradientDescent(0.5 + 1j), TypeError, "step_size")
    add("gd-str", lambda: fd.GradientDescent("0.5"), TypeError, "step_size")
    add("gd-None", lambda: fd.GradientDescent(None), TypeError, "step_size")
    add(
        "gd-vector",
        lambda: fd.GradientDescent(jnp.ones(2)),
        ValueError,
        "step_size must be a scalar",
    )
    add("gd-empty", lambda: fd.GradientDescent(jnp.ones(0)), ValueError, "step_size")
    add("id-alpha0", lambda: fd.InertialDescent(0.1, 0.0), ValueError, "alpha")
    add("id-beta-neg", lambda: fd.InertialDescent(0.1, 1.0, -1.0), ValueError, "beta")
    add("id-alpha-bool", lambda: fd.InertialDescent(0.1, True), TypeError, "alpha")
    add("id-step-complex", lambda: fd.InertialDescent(0.1j, 1.0), TypeError, "step_size")
    add("if-alpha-nan", lambda: fd.InertialFlow(NAN), ValueError, "alpha")
    add("if-beta-str", lambda: fd.InertialFlow(1.0, "0"), TypeError, "beta")
    add("gf-rtol0", lambda: fd.GradientFlow(rtol=0.0), ValueError, "rtol")
    add("gf-atol-nan", lambda: fd.GradientFlow(atol=NAN), ValueError, "atol")
    add("gf-rtol-str", lambda: fd.GradientFlow(rtol="1e-6"), TypeError, "rtol")
    add("gf-maxsteps0", lambda: fd.GradientFlow(max_steps=0), ValueError, "max_steps")
    add("gf-maxsteps-f", lambda: fd.GradientFlow(max_steps=10.0), TypeError, "max_steps")
    add("gf-maxsteps-bool", lambda: fd.GradientFlow(max_steps=True), TypeError, "max_steps")
    add("gf-norm", lambda: fd.GradientFlow(norm="l2"), ValueError, "norm")
    add("mf-step0", lambda: fd.ModifiedFlow(0.0), ValueError, "step_size")
    add("mf-step-bool", lambda: fd.ModifiedFlow(True), TypeError, "step_size")
    add("opt-solver", lambda: fd.OptimistixBaseline("gauss-newton"), TypeError, "solver")
    add("lb-0", lambda: fd.LossBelow(0.0), ValueError, "tol")
    add("lb-nan", lambda: fd.LossBelow(NAN), ValueError, "tol")
    add("lb-str", lambda: fd.LossBelow("1e-7"), TypeError, "tol")
    add("lb-bool", lambda: fd.LossBelow(True), TypeError, "tol")

    # solve
    s = fd.solve
    add("solve-obj", lambda: s(PROBLEM, GD, num_steps=2), TypeError, "objective")
    add("solve-dyn", lambda: s(OBJ, "gd", num_steps=2), TypeError, "dynamics")
    add("solve-dyn-cls", lambda: s(OBJ, fd.GradientDescent, num_steps=2), TypeError, "dynamics")
    add("solve-steps-neg", lambda: s(OBJ, GD, num_steps=-1), ValueError, "num_steps")
    add("solve-steps-f", lambda: s(OBJ, GD, num_steps=2.7), E, "num_steps")
    add("solve-steps-bool", lambda: s(OBJ, GD, num_steps=True), E, "num_steps")
    add("solve-steps-str", lambda: s(OBJ, GD, num_steps="2"), E, "num_steps")
    add("solve-nohorizon", lambda: s(OBJ, GD), ValueError, "num_steps")
    add("solve-t1-neg", lambda: s(OBJ, GD, t1=-1.0), ValueError, "t1")
    add("solve-t1-nan", lambda: s(OBJ, GD, t1=NAN), ValueError, "t1")
    add("solve-t1-inf", lambda: s(OBJ, fd.GradientFlow(), t1=INF), ValueError, "t1")
    add(
        "solve-t1-steps",
        lambda: s(OBJ, GD, t1=1.0, num_steps=3),
        ValueError,
        "t1=1.0 and num_steps=3",
    )
    add("solve-flow-steps", lambda: s(OBJ, fd.GradientFlow(), num_steps=3), ValueError, "num_steps")
    add("solve-flow-not1", lambda: s(OBJ, fd.GradientFlow()), ValueError, "t1")
    add("solve-saves0", lambda: s(OBJ, GD, num_steps=2, num_saves=0), ValueError, "num_saves")
    add("solve-saves-bool", lambda: s(OBJ, GD, num_steps=2, num_saves=True), E, "num_saves")
    add("solve-ts-empty", lambda: s(OBJ, GD, num_steps=2, ts=[]), ValueError, "ts")
    add("solve-ts-2d", lambda: s(OBJ, GD, num_steps=2, ts=np.zeros((2, 2))), E, "ts")
    add("solve-ts-nan", lambda: s(OBJ, GD, num_steps=2, ts=[0.0, NAN]), ValueError, "ts")
    add("solve-ts-order", lambda: s(OBJ, GD, num_steps=2, ts=[0.5, 0.0]), ValueError, "ts")
    add("solve-ts-beyond", lambda: s(OBJ, GD, num_steps=2, ts=[0.0, 5.0]), ValueError, "ts")
    add("solve-ts-same-step", lambda: s(OBJ, GD, num_steps=2, ts=[0.0, 0.1]), ValueError, "ts")
    add(
        "solve-div1",
        lambda: s(OBJ, GD, num_steps=2, diverge_factor=1.0),
        ValueError,
        "diverge_factor",
    )
    add(
        "solve-div-nan",
        lambda: s(OBJ, GD, num_steps=2, diverge_factor=NAN),
        ValueError,
        "diverge_factor",
    )
    add(
        "solve-par-inf",
        lambda: s(OBJ, GD, num_steps=2, param_factor=INF),
        ValueError,
        "param_factor",
    )
    add(
        "solve-par-bool",
        lambda: s(OBJ, GD, num_steps=2, param_factor=True),
        TypeError,
        "param_factor",
    )
    add("solve-stop", lambda: s(OBJ, GD, num_steps=2, stop=1e-7), TypeError, "stop")

    # compare and convergence_order
    add("cmp-two-descents", lambda: fd.compare(run("gd"), run("gd")), ValueError, "flow")
    add("cmp-two-flows", lambda: fd.compare(run("flow"), run("flow")), ValueError, "descent")
    add("cmp-swapped", lambda: fd.compare(run("gd"), run("flow")), ValueError, "flow")
    add("cmp-objectives", lambda: fd.compare(run("flow_other"), run("gd")), ValueError, "objective")
    add("cmp-times", lambda: fd.compare(run("flow"), run("gd2")), ValueError, "save times")
    add("cmp-not-traj", lambda: fd.compare("flow", run("gd")), TypeError, "flow")
    add("cmp-rtol", lambda: fd.compare(run("flow"), run("gd"), rtol=-1.0), ValueError, "rtol")
    co = fd.convergence_order
    add("co-one-step", lambda: co(OBJ, step_sizes=[0.1], t=1.0), ValueError, "step siz")
    add("co-t0", lambda: co(OBJ, step_sizes=[0.1, 0.05], t=0.0), ValueError, "t must")
    add("co-t-nan", lambda: co(OBJ, step_sizes=[0.1, 0.05], t=NAN), ValueError, "t must")
    add("co-step-neg", lambda: co(OBJ, step_sizes=[0.1, -0.05], t=1.0), ValueError, "step siz")
    add("co-not-whole", lambda: co(OBJ, step_sizes=[0.3, 0.1], t=1.0), ValueError, "whole number")
    add(
        "co-no-flow",
        lambda: co(OBJ, step_sizes=[0.1, 0.05], t=1.0, dynamics=[]),
        ValueError,
        "flow",
    )

    # sharpness
    theta0 = OBJ.initial_state()
    add("sharp-iters0", lambda: fd.sharpness(OBJ, theta0, num_iters=0), ValueError, "num_iters")
    add("sharp-iters-f", lambda: fd.sharpness(OBJ, theta0, num_iters=2.5), E, "num_iters")
    add("sharp-init", lambda: fd.sharpness(OBJ, theta0, init=jnp.ones(3)), ValueError, "init")
    add("sharp-obj", lambda: fd.sharpness(PROBLEM, theta0), TypeError, "objective")
    add(
        "sharp-along-noparams",
        lambda: fd.sharpness_along(OBJ, fd.solve(OBJ, GD, num_steps=2, save_params=False)),
        ValueError,
        "save_params",
    )
    add(
        "sharp-along-iters",
        lambda: fd.sharpness_along(OBJ, run("gd"), num_iters=0),
        ValueError,
        "num_iters",
    )
    add(
        "norm-sharp-flow", lambda: fd.normalised_sharpness(OBJ, run("flow")), ValueError, "discrete"
    )

    # theory
    add("cert-step0", lambda: fd.certify(OBJ, 0.0), ValueError, "step_size")
    add("cert-step-nan", lambda: fd.certify(OBJ, NAN), ValueError, "step_size")
    add("cert-samples0", lambda: fd.certify(OBJ, num_samples=0), ValueError, "num_samples")
    add("cert-power0", lambda: fd.certify(OBJ, power_iters=0), ValueError, "power_iters")
    add("cert-obj", lambda: fd.certify(PROBLEM), TypeError, "objective")
    add(
        "rec-noparams",
        lambda: fd.recovery(OBJ, fd.solve(OBJ, GD, num_steps=2, save_params=False)),
        ValueError,
        "save_params",
    )
    add("rec-iters0", lambda: fd.recovery(OBJ, run("gd"), num_iters=0), ValueError, "num_iters")
    add("rec-radius-neg", lambda: fd.recovery(OBJ, run("gd"), radius=-1.0), ValueError, "radius")
    add("proj-radius-nan", lambda: fd.project_onto_reachable(OBJ, X, NAN), ValueError, "radius")
    add("proj-target", lambda: fd.project_onto_reachable(OBJ, X[:3], 1.0), E, "target")

    # sweeps: Grid, Instance, plan_chunks, run_key, sweep, merge_sweeps
    add("grid-n-float", lambda: fd.Grid(n=4.0, m=[4], k=[5]), TypeError, "n must be an integer")
    add("grid-n-str", lambda: fd.Grid(n="4", m=[4], k=[5]), TypeError, "n must")
    add("grid-n-empty", lambda: fd.Grid(n=[], m=[4], k=[5]), ValueError, "n must")
    add("grid-n0", lambda: fd.Grid(n=[0], m=[4], k=[5]), ValueError, r"n\[0\]")
    add("grid-m-neg", lambda: fd.Grid(n=[4], m=[-4], k=[5]), ValueError, r"m\[0\]")
    add("grid-k-float", lambda: fd.Grid(n=[4], m=[4], k=[5.5]), TypeError, r"k\[0\]")
    add("grid-k-bool", lambda: fd.Grid(n=[4], m=[4], k=[True]), TypeError, r"k\[0\]")
    add("grid-k-nan", lambda: fd.Grid(n=[4], m=[4], k=[NAN]), TypeError, r"k\[0\]")
    add("grid-k-repeat", lambda: fd.Grid(n=[4], m=[4], k=[5, 5]), ValueError, "k has repeated")
    add("grid-seeds0", lambda: fd.Grid(n=4, m=4, k=5, seeds=0), ValueError, "seeds")
    add("grid-seeds-f", lambda: fd.Grid(n=4, m=4, k=5, seeds=2.0), TypeError, "seeds")
    add("grid-d0", lambda: fd.Grid(n=4, m=4, k=5, d=0), ValueError, "d must")
    add("grid-None", lambda: fd.Grid(n=None, m=4, k=5), TypeError, "n must")
    add("inst-act", lambda: fd.Instance(activation="sigmoid"), TypeError, "activation")
    add("inst-loss", lambda: fd.Instance(loss="mse"), TypeError, "loss")
    add("inst-scaling", lambda: fd.Instance(scaling="1/n"), ValueError, "scaling")
    add("inst-signal", lambda: fd.Instance(signal=3), TypeError, "signal")
    add("inst-vlaw", lambda: fd.Instance(v_law="cauchy"), ValueError, "v_law")
    add("inst-noise-neg", lambda: fd.Instance(noise_std=-1.0), ValueError, "noise_std")
    add("inst-noise-nan", lambda: fd.Instance(noise_std=NAN), ValueError, "noise_std")
    add("inst-noise-str", lambda: fd.Instance(noise_std="0"), TypeError, "noise_std")
    add("plan-chunk0", lambda: fd.plan_chunks(GRID, chunk_size=0), ValueError, "chunk_size")
    add("plan-chunk-f", lambda: fd.plan_chunks(GRID, chunk_size=2.5), E, "chunk_size")
    add(
        "plan-ratio",
        lambda: fd.plan_chunks(GRID, chunk_size=4, bucket_ratio=0.5),
        ValueError,
        "bucket_ratio",
    )
    add(
        "plan-ratio-nan",
        lambda: fd.plan_chunks(GRID, chunk_size=4, bucket_ratio=NAN),
        ValueError,
        "bucket_ratio",
    )
    add(
        "plan-pad",
        lambda: fd.plan_chunks(GRID, chunk_size=4, pad_to=(1, 2)),
        E,
        arg("pad_to", "pad_to"),
    )
    add("plan-grid", lambda: fd.plan_chunks("grid", chunk_size=4), TypeError, "grid")
    add("key-seed-f", lambda: fd.run_key(0.5, 4, 4, 0), E, "seed")
    add("key-n-neg", lambda: fd.run_key(0, -4, 4, 0), ValueError, "n")
    add("key-s-str", lambda: fd.run_key(0, 4, 4, "0"), E, "s")
    sw = fd.sweep
    add(
        "sweep-steps-neg",
        lambda: sw(GRID, dynamics=GD, num_steps=-1, progress=False),
        ValueError,
        "num_steps",
    )
    add(
        "sweep-steps-f",
        lambda: sw(GRID, dynamics=GD, num_steps=2.7, progress=False),
        E,
        "num_steps",
    )
    add("sweep-steps-none", lambda: sw(GRID, dynamics=GD, progress=False), ValueError, "num_steps")
    add(
        "sweep-out-empty",
        lambda: sw(GRID, dynamics=GD, num_steps=2, out="", progress=False),
        ValueError,
        "out",
    )
    add(
        "sweep-grid",
        lambda: sw("grid", dynamics=GD, num_steps=2, progress=False),
        TypeError,
        "grid",
    )
    add(
        "sweep-dyn",
        lambda: sw(GRID, dynamics="gd", num_steps=2, progress=False),
        TypeError,
        "dynamics",
    )
    add(
        "sweep-inst",
        lambda: sw(GRID, dynamics=GD, num_steps=2, instance="p1", progress=False),
        TypeError,
        "instance",
    )
    add(
        "sweep-stop",
        lambda: sw(GRID, dynamics=GD, num_steps=2, stop=1e-7, progress=False),
        TypeError,
        "stop",
    )
    add(
        "sweep-chunk0",
        lambda: sw(GRID, dynamics=GD, num_steps=2, chunk_size=0, progress=False),
        ValueError,
        "chunk_size",
    )
    add(
        "sweep-shard",
        lambda: sw(GRID, dynamics=GD, num_steps=2, shard=(2, 2), progress=False),
        ValueError,
        "shard",
    )
    add(
        "sweep-ratio",
        lambda: sw(GRID, dynamics=GD, num_steps=2, bucket_ratio=NAN, progress=False),
        ValueError,
        "bucket_ratio",
    )
    add(
        "sweep-compact",
        lambda: sw(GRID, dynamics=GD, num_steps=2, compact=1, progress=False),
        E,
        "compact",
    )
    add(
        "sweep-seed-f",
        lambda: sw(GRID, dynamics=GD, num_steps=2, seed=0.5, progress=False),
        E,
        "seed",
    )
    add(
        "sweep-seed-neg",
        lambda: sw(GRID, dynamics=GD, num_steps=2, seed=-1, progress=False),
        ValueError,
        "seed",
    )
    add("sweep-progress", lambda: sw(GRID, dynamics=GD, num_steps=2, progress="yes"), E, "progress")
    add(
        "sweep-pad",
        lambda: sw(GRID, dynamics=GD, num_steps=2, pad_to=(0, 1, 1), progress=False),
        ValueError,
        "pad_to",
    )
    add(
        "sweep-flow-t1",
        lambda: sw(GRID, dynamics=fd.GradientFlow(), t1=-1.0, progress=False),
        ValueError,
        "t1",
    )
    add("merge-empty", lambda: fd.merge_sweeps([]), ValueError, "folders")
    add("merge-str", lambda: fd.merge_sweeps("folder"), E, "folders")

    # metrics
    img = jnp.zeros((8, 8))
    add("psnr-range0", lambda: fd.psnr(img, img, data_range=0.0), ValueError, "data_range")
    add("psnr-range-nan", lambda: fd.psnr(img, img, data_range=NAN), ValueError, "data_range")
    add("psnr-shape", lambda: fd.psnr(jnp.zeros((8, 7)), img), E, "image|reference|shape")
    add("ssim-win-even", lambda: fd.ssim(img, img, win_size=4), ValueError, "win_size")
    add("ssim-win-big", lambda: fd.ssim(img, img, win_size=9), ValueError, "win_size")
    add(
        "relerr-shape",
        lambda: fd.relative_error(jnp.zeros(3), jnp.zeros(4)),
        E,
        "estimate|reference|shape",
    )
    add("imm-size", lambda: fd.image_metrics(jnp.zeros(63), img), ValueError, "signals")
    add(
        "imm-range",
        lambda: fd.image_metrics(jnp.zeros(64), img, data_range=-1.0),
        ValueError,
        "data_range",
    )
    add("sfc-shape", lambda: fd.state_from_coordinates(OBJ, jnp.zeros(3)), E, "coords")
    return c


@pytest.mark.parametrize("call, exc, match", cases())
def test_bad_input_gives_a_clear_error(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# -- what must be accepted ----------------------------------------------------------------------
def test_numpy_integers_are_sizes():
    i = np.int64
    net = fd.TwoLayerDIP.init(KEY, d=i(3), k=np.int32(5), n=i(6))
    assert net.width == 5 and isinstance(net.width, int)
    fd.MLP.init(KEY, d=i(3), widths=[i(4)], n=i(6))
    fd.ConvDIP.init(KEY, image_shape=(i(8), i(8)), channels=i(4), num_upsamples=i(1))
    prob = fd.InverseProblem.compressed_sensing(KEY, i(4), i(6))
    assert (prob.m, prob.n) == (4, 6)
    grid = fd.Grid(n=i(6), m=np.array([4]), k=[i(5), 12], seeds=i(2), d=i(3))
    assert grid.seeds == 2 and isinstance(grid.seeds, int) and grid.k == (5, 12)
    traj = fd.solve(OBJ, GD, num_steps=i(2), num_saves=i(3))
    assert int(traj.num_steps) == 2
    fd.GradientDescent(np.float32(0.5))
    fd.LossBelow(np.float64(1e-7))
    fd.InverseProblem(A, X, noise_std=np.float64(0.0))


# -- the command line -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def a_file(tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("cli") / "a_file"
    path.write_text("not a folder")
    return path


def cli_cases():
    # `{file}` is replaced by an existing file, `{dir}` by an empty folder.
    c = [
        ["demo", "--t1", "-5"],
        ["demo", "--t1", "nan"],
        ["demo", "--t1", "inf"],
        ["demo", "--t1", "abc"],
        ["demo", "--m", "0"],
        ["demo", "--m", "2.5"],
        ["demo", "--step-sizes", "1,-1"],
        ["demo", "--no-such-option"],
        ["demo", "--out", "{file}"],
        ["demo", "--out", "{file}/sub"],
        ["demo", "--out", ""],
        ["list", "extra"],
        ["plot"],
        ["plot", "{file}"],
        ["plot", "{dir}"],
        ["plot", "{dir}/missing"],
        ["reproduce"],
        ["reproduce", "no-such-experiment"],
        ["no-such-command"],
    ]
    for name in (
        "demo",
        "ssvm-fig1",
        "ssvm-fig2",
        "flow-vs-descent",
        "gd-overparam",
        "flow-vs-descent-phase",
        "images",
    ):
        c.append(["reproduce", name, "--out", "{file}"])
        c.append(["reproduce", name, "--quick", "--out", "{file}/sub"])
        c.append(["reproduce", name, "--no-such-option"])
    return c


@pytest.mark.parametrize("argv", cli_cases(), ids=lambda a: " ".join(a))
def test_cli_bad_input_exits_2_with_one_line(argv, a_file, tmp_path, capsys):
    argv = [a.replace("{file}", str(a_file)).replace("{dir}", str(tmp_path)) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0], err
    assert "Traceback" not in err
