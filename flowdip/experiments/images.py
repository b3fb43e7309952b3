"""`flowdip reproduce images`: the image experiments of P3 (Buskulic, Fadili, Quéau, EUSIPCO
2024), reconstructed (docs/theory.md §11.3: the paper shows reconstructions with two operators whose
conditioning and noise levels explain the quality gap; its exact protocol was not recovered).

Protocol (ours; every choice is an option of `Options`):
two test images that ship with scikit-image (the camera man and the Shepp–Logan phantom),
downscaled to 64 × 64 and scaled to `[0, 1]`; two operators, Gaussian compressed sensing with
`m = n/2` (well conditioned, `κ ≈ 5.8`) and a Gaussian blur of σ = 1.5 px with circular
padding (ill conditioned, `κ ≈ 6·10⁸`); Gaussian noise at two levels relative to the RMS of the
clean measurements; the MSE loss; a [`flowdip.ConvDIP`][] (tanh, float32) trained by gradient
descent with `η = 1.9/L̂` (`L̂` the top Hessian eigenvalue at `θ₀`, by Lanczos) and by the
gradient flow (Ralston, with a step budget) on the same time interval, and from the same start
by Adam (optax); the papers' two-layer DIP on the flattened images, trained by gradient
descent, for comparison; and each operator's singular values against the images' data and the
noise, with what an oracle filter in that basis recovers. All runs of one operator (images ×
noise levels) and one dynamics are one vmapped solve.
"""

import dataclasses
import math
import os
import pathlib
import time
from collections.abc import Callable, Sequence

import diffrax as dfx
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax

from .._dynamics import GradientDescent, GradientFlow, OptaxBaseline
from .._generator.activations import Sigmoid, Tanh
from .._generator.convdip import ConvDIP
from .._generator.networks import TwoLayerDIP
from .._metrics import image_metrics
from .._problem.operators import (
    AbstractImagingOperator,
    Blur,
    CompressedSensing,
    relative_noise_std,
)
from .._problem.problem import InverseProblem
from ._folder import load_tree, read_options, save_tree
from ._images_figures import (
    IMAGES as IMAGES,
    load_image as load_image,
    OPERATOR_NAMES,
    write,
)
from ._images_runs import (
    batched_curvature,
    batched_discrete,
    batched_flow,
    Clock,
    observation_image,
    result_names,
    runtime_operator,
    save_steps,
)
from ._images_spectra import spectrum


#: The flow solvers `Options.flow_solver` accepts.
FLOW_SOLVERS = {
    "ralston": dfx.Ralston,
    "heun": dfx.Heun,
    "bosh3": dfx.Bosh3,
    "tsit5": dfx.Tsit5,
    "dopri5": dfx.Dopri5,
}
OPERATORS = ("cs", "blur")


@dataclasses.dataclass(frozen=True)
class Options:
    """Every choice of `flowdip reproduce images`; the defaults are the full run.

    **Arguments:**

    - `size`: images are `size × size` (64; `--quick`: 32).
    - `images`: test images, from `"camera"` and `"phantom"`.
    - `operators`: from `"cs"` (well conditioned) and `"blur"` (ill conditioned).
    - `cs_ratio`: `m/n` of compressed sensing.
    - `blur_sigma`: standard deviation of the blur kernel, in pixels.
    - `noise_levels`: noise standard deviations relative to the RMS of `A x̄`.
    - `channels`, `num_upsamples`: the [`flowdip.ConvDIP`][] (its input is
      `size/2^num_upsamples` pixels wide).
    - `steps`: gradient-descent steps (`--max-steps`); the flow runs on the same interval
      `[0, steps·η]`.
    - `step_factor`: `η = step_factor/L̂`.
    - `num_saves`: save times of each run, geometrically spaced in steps (the
      early-stopping point is the best of them).
    - `flow_solver`: the flow's Diffrax solver, from `FLOW_SOLVERS` (default `"ralston"`).
      The ConvDIP's flow sharpens as it goes (`λ_max(∇²F)` doubles within the first 100η of
      the 64 × 64 blur run, while descent stays at its edge of stability), so an explicit
      solver's step is set by stability, not accuracy; Ralston's two-stage second-order
      method covers more time per gradient evaluation there than Tsit5's six, and on the
      quick camera problem it was closer to a Dopri5 reference at rtol 1e-4 (1% against 2%).
    - `flow_rtol`, `flow_atol`: tolerances of the flow (float32, so not below 1e-6).
    - `flow_max_steps`: the flow's step budget; a run that exhausts it is recorded as
      `max_steps_reached` (its saves stop where it stopped, and the figures show how far it
      got). The sharpening flow does not reach `steps·η` within the default budgets: what
      bounds the run's time is this budget.
    - `adam`: also train the same ConvDIP from the same start by Adam
      ([`flowdip.OptaxBaseline`][] with `optax.adam`), the optimizer of practice.
    - `adam_lr`: Adam's learning rate.
    - `adam_steps`: Adam's steps (saved at as many geometrically spaced steps as descent).
    - `two_layer`: also train the papers' two-layer DIP on the flattened images.
    - `two_layer_k`: its width (default: `n`, the number of pixels).
    - `two_layer_steps`: its descent steps (at its own `η = step_factor/L̂`); it reaches its
      best error within the first few hundred.
    - `seed`: base seed (operators, noise, networks).
    - `out`: output folder.
    - `progress`: print a line as each stage starts and ends.
    """

    size: int = 64
    images: str | Sequence[str] = IMAGES
    operators: str | Sequence[str] = OPERATORS
    cs_ratio: float = 0.5
    blur_sigma: float = 1.5
    noise_levels: float | Sequence[float] = (0.05, 0.25)
    channels: int = 12
    num_upsamples: int = 4
    steps: int = dataclasses.field(default=20000, metadata=dict(flag="max_steps"))
    step_factor: float = 1.9
    num_saves: int = 41
    flow_solver: str = dataclasses.field(
        default="ralston", metadata=dict(choices=tuple(FLOW_SOLVERS))
    )
    flow_rtol: float = 1e-2
    flow_atol: float = 1e-6
    flow_max_steps: int = 1200
    adam: bool = True
    adam_lr: float = 1e-2
    adam_steps: int = 5000
    two_layer: bool = True
    two_layer_k: int | None = None
    two_layer_steps: int = 2000
    seed: int = 0
    out: str | os.PathLike = pathlib.Path("results/images")
    progress: bool = True

    def __post_init__(self):
        object.__setattr__(self, "out", pathlib.Path(self.out))
        for name in ("images", "operators", "noise_levels"):
            value = getattr(self, name)
            value = (value,) if isinstance(value, str | int | float) else tuple(value)
            object.__setattr__(self, name, value)
        for name in (
            "size",
            "channels",
            "steps",
            "num_saves",
            "flow_max_steps",
            "adam_steps",
            "two_layer_steps",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {value!r}.")
        if self.size < 8:
            raise ValueError(f"size must be at least 8 pixels; got {self.size}.")
        if self.num_saves > self.steps + 1:
            raise ValueError(f"num_saves={self.num_saves} exceeds steps + 1 = {self.steps + 1}.")
        if bad := [i for i in self.images if i not in IMAGES]:
            raise ValueError(f"Unknown images {bad}; choose from {IMAGES}.")
        if bad := [o for o in self.operators if o not in OPERATORS]:
            raise ValueError(f"Unknown operators {bad}; choose from {OPERATORS}.")
        if not self.images or not self.operators or not self.noise_levels:
            raise ValueError("images, operators and noise_levels must not be empty.")
        if any(not (math.isfinite(v) and v >= 0) for v in self.noise_levels):
            raise ValueError(f"noise_levels must be numbers >= 0; got {self.noise_levels}.")
        if not 0 < self.cs_ratio <= 1:
            raise ValueError(f"cs_ratio must be in (0, 1]; got {self.cs_ratio}.")
        for name in ("blur_sigma", "step_factor", "flow_rtol", "flow_atol", "adam_lr"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0; got {name}={value}.")
        if self.two_layer_k is not None and not self.two_layer_k >= 1:
            raise ValueError(f"two_layer_k must be >= 1; got two_layer_k={self.two_layer_k}.")
        if self.flow_solver not in FLOW_SOLVERS:
            raise ValueError(
                f"Unknown flow_solver {self.flow_solver!r}; choose from {tuple(FLOW_SOLVERS)}."
            )
        if self.flow_rtol < 1e-6:
            raise ValueError(f"flow_rtol={self.flow_rtol} is below float32 resolution.")

    @classmethod
    def quick(cls, **overrides) -> "Options":
        """32 × 32 images, a smaller net, 300 descent and Adam steps and a flow budget of 600
        steps: under a minute on a 2-core CPU (59 s), mostly compilation."""
        base = dict(
            size=32,
            channels=8,
            num_upsamples=3,
            steps=300,
            num_saves=16,
            flow_max_steps=600,
            adam_steps=300,
            two_layer_steps=300,
            out=pathlib.Path("results/images-quick"),
        )
        return cls(**{**base, **overrides})


# -- pieces -------------------------------------------------------------------------------------
def make_operator(name: str, options: Options, key) -> AbstractImagingOperator:
    """The operator `name` (`"cs"` or `"blur"`) for `options.size`-pixel images, float32."""
    shape = (options.size, options.size)
    if name == "cs":
        m = max(1, round(options.cs_ratio * options.size**2))
        return CompressedSensing.gaussian(key, shape, m, dtype=jnp.float32)
    return Blur.gaussian(shape, options.blur_sigma, dtype=jnp.float32)


# -- the experiment -----------------------------------------------------------------------------
def _problems(operator, truths, cases, key, j):
    problems = []
    for i, (img, lvl) in enumerate(cases):
        x = jnp.asarray(truths[img].reshape(-1), jnp.float32)
        std = relative_noise_std(operator, x, float(lvl))
        problems.append(
            InverseProblem(operator, x, noise_std=std, key=jr.fold_in(key, 100 * j + i))
        )
    return problems


def _metrics(traj, truths, cases, t1, step_size) -> dict:
    per = [
        image_metrics(traj.signal[i], jnp.asarray(truths[img], jnp.float32))
        for i, (img, _) in enumerate(cases)
    ]
    return {key_: np.stack([np.asarray(p[key_], np.float64) for p in per]) for key_ in per[0]} | {
        "loss": np.asarray(traj.loss, np.float64),
        "ts": np.asarray(traj.ts, np.float64),
        "signal": np.asarray(traj.signal),
        "result": result_names(traj.result),
        "t1": t1,
        "step_size": step_size,
    }


def run(options: Options, log: Callable[[str], None] = print) -> dict[str, pathlib.Path]:
    """Runs the image experiment and writes its figures, table and raw metrics.

    **Arguments:**

    - `options`: an [`Options`][flowdip.experiments.images.Options].
    - `log`: where progress lines go.

    **Returns:** the paths written: `curves` (`images-curves.png`: relative error and PSNR
    against steps, the early-stopping points marked), `grid` (`images-grid.png`:
    reconstructions at the best time and at the end), `spectra` (`images-spectra.png`: the
    operators' singular values and the images' coefficients against the noise), `summary`
    (`summary.txt`) and `metrics` (`metrics.npz`), and `data` (`data.npz`, what the figures
    draw).
    """
    log = log if options.progress else (lambda _: None)
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    size, n = options.size, options.size**2
    truths = {name: load_image(name, size) for name in options.images}
    cases = [(img, lvl) for img in options.images for lvl in options.noise_levels]
    key = jr.key(options.seed)
    k_ops, k_noise, k_net, k_two, k_pow = jr.split(key, 5)
    net = ConvDIP.init(
        k_net,
        image_shape=(size, size),
        channels=options.channels,
        num_upsamples=options.num_upsamples,
        activation=Tanh(),
        dtype=jnp.float32,
    )
    log(
        f"ConvDIP: {net.num_parameters()} parameters, input {net.sizes[0]}, "
        f"{len(cases)} runs per operator ({len(options.images)} images x "
        f"{len(options.noise_levels)} noise levels), float32"
    )
    k = options.two_layer_k or n
    two = TwoLayerDIP.init(k_two, d=16, k=k, n=n, activation=Sigmoid(), dtype=jnp.float32)
    results = {}
    total = len(options.operators)
    for j, op_name in enumerate(options.operators):
        start = time.perf_counter()
        operator = make_operator(op_name, options, jr.fold_in(k_ops, j))
        problems = _problems(operator, truths, cases, k_noise, j)
        xs = jnp.stack([p.x_true for p in problems])
        ys = jnp.stack([p.y for p in problems])
        stds = np.asarray([p.noise_std for p in problems])
        spectra = {img: spectrum(operator, truths[img]) for img in options.images}
        sv = spectra[options.images[0]].sigma
        A_run, ys_run = runtime_operator(operator, ys)
        keys = jr.split(k_pow, len(cases))
        L = float(batched_curvature(A_run, net, xs, ys_run, keys))
        # η as the float32 the descent will use, so that the save times are exact steps.
        eta = float(np.float32(options.step_factor / L))
        t1 = options.steps * eta
        steps = save_steps(options.steps, options.num_saves)
        ts = steps * eta
        horizon = jnp.asarray(options.steps, jnp.int32)
        log(
            f"[{j + 1}/{total}] {OPERATOR_NAMES[op_name]}: ‖A‖ = {sv[0]:.3g}, "
            f"κ = {sv[0] / sv[-1]:.3g}; L̂ = {L:.3g}, η = {eta:.3g}"
        )
        clock = Clock(log)
        log(f"      ConvDIP, gradient descent ({options.steps} steps) ...")
        gd = GradientDescent(jnp.asarray(eta, jnp.float32))
        runs = {"ConvDIP GD": batched_discrete(A_run, net, xs, ys_run, gd, steps, horizon)}
        metrics = {"ConvDIP GD": _metrics(runs["ConvDIP GD"], truths, cases, t1, eta)}
        clock.done()
        log(
            f"      ConvDIP, gradient flow ({options.flow_solver}, rtol {options.flow_rtol:g}, "
            f"t1 = {t1:.3g}, at most {options.flow_max_steps} steps) ..."
        )
        flow = GradientFlow(
            solver=FLOW_SOLVERS[options.flow_solver](),
            rtol=options.flow_rtol,
            atol=options.flow_atol,
            max_steps=options.flow_max_steps,
        )
        ts_, t1_ = jnp.asarray(ts, jnp.float32), jnp.asarray(t1, jnp.float32)
        gf = batched_flow(A_run, net, xs, ys_run, flow, ts_, t1_)
        metrics["ConvDIP GF"] = _metrics(gf, truths, cases, t1, eta)
        clock.done()
        if options.adam:
            log(f"      ConvDIP, Adam (lr {options.adam_lr:g}, {options.adam_steps} steps) ...")
            adam = OptaxBaseline(optax.adam, jnp.asarray(options.adam_lr, jnp.float32))
            adam_steps = save_steps(options.adam_steps, options.num_saves)
            traj = batched_discrete(
                A_run, net, xs, ys_run, adam, adam_steps, jnp.asarray(options.adam_steps)
            )
            lr = float(np.float32(options.adam_lr))
            metrics["ConvDIP Adam"] = _metrics(traj, truths, cases, options.adam_steps * lr, lr)
            clock.done()
        if options.two_layer:
            log(f"      two-layer DIP (k = {k}), gradient descent ...")
            L2 = float(batched_curvature(A_run, two, xs, ys_run, keys))
            # Its own stable step and time scale: the two-layer net is far smoother than the
            # ConvDIP, and on the ConvDIP's interval it would barely move.
            eta2 = float(np.float32(options.step_factor / L2))
            gd2 = GradientDescent(jnp.asarray(eta2, jnp.float32))
            steps2 = options.two_layer_steps
            saves2 = save_steps(steps2, options.num_saves)
            traj = batched_discrete(
                A_run, two, xs, ys_run, gd2, saves2, jnp.asarray(steps2, jnp.int32), unroll=4
            )
            metrics["two-layer GD"] = _metrics(traj, truths, cases, steps2 * eta2, eta2)
            clock.done()
        results[op_name] = dict(
            sv=sv,
            L=L,
            eta=eta,
            t1=t1,
            stds=stds,
            ys=np.asarray(ys),
            observations=[observation_image(operator, ys[i], size) for i in range(len(cases))],
            spectra={img: dataclasses.asdict(spec) for img, spec in spectra.items()},
            metrics=metrics,
        )
        log(f"      done in {time.perf_counter() - start:.1f} s")
    paths = {"data": out / "data.npz"}
    save_tree(paths["data"], dict(truths=truths, results=results))
    return write(options, truths, cases, results) | paths


def redraw(folder: str | pathlib.Path) -> dict[str, pathlib.Path]:
    """Redraws the figures, the table and `metrics.npz` from `data.npz` in `folder`.

    **Returns:** the paths written: `curves`, `grid`, `summary`, `metrics`.
    """
    folder = pathlib.Path(folder)
    options = read_options(folder, Options, out=folder)
    data = load_tree(folder / "data.npz")
    cases = [(img, lvl) for img in options.images for lvl in options.noise_levels]
    return write(options, data["truths"], cases, data["results"])
