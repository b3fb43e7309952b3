"""Steps per second of gradient descent on the 64×64 ConvDIP (the `reproduce images` net),
optionally the wall time of the full `flowdip reproduce images`, and optionally Adam on the
deepinv-shaped decoder against deepinv's Deep Image Prior.

    python benchmarks/bench_images.py [--size 64 --channels 16 --num-upsamples 4 --steps 200]
                                      [--dtype float32] [--full]
    python benchmarks/bench_images.py --adam [--lr 2e-3 --adam-steps 3000 --normalise
                                      --adam-channels 64 --layers 7 --activation softplus]
    python benchmarks/bench_images.py --adam --small --channels 12 --lr 1e-2

Reports the compile time (first call) and the best of three timed runs, per operator; with
`--full`, runs `flowdip reproduce images` in a subprocess and reports its wall and CPU time.

With `--adam` (and nothing else): the camera image of `reproduce images` at 64 × 64, its
compressed-sensing operator (`m = n/2`) and 5% noise, drawn from the same keys;
[`flowdip.ConvDIP.decoder`][] (deepinv's `ConvDecoder` shape, 64 channels, seven layers)
trained by `OptaxBaseline(optax.adam, lr)` through `fd.solve`, float32. Prints the best PSNR
over the saves (every `--save-every` iterations: oracle early stopping), its iteration, the
PSNR after 100 iterations and at the end, and the time per iteration (wall and process CPU;
compilation excluded by a first, shorter run of the same program). deepinv's
`DeepImagePrior` with its `ConvDecoder` (64 channels, 259 457 parameters, Adam, lr 10⁻²) on
this problem: 28.1 dB at iteration ≈ 1800, 21 dB after 100, ≈ 30 ms per iteration on the
project's 2-core CPU. With `--small`, Adam trains the ConvDIP of `reproduce images` instead
(tanh, bilinear, `--channels` wide, from the same start as there).
"""

import argparse
import os
import resource
import subprocess
import sys
import time

import jax
import optax


jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import numpy as np  # noqa: E402

import flowdip as fd  # noqa: E402
from flowdip.experiments import images  # noqa: E402


#: deepinv's Deep Image Prior on the same problem (measured with deepinv on the 2-core CPU).
DEEPINV = dict(best_psnr=28.1, best_iteration=1800, psnr_100=21.0, ms_per_iteration=30.0)
ACTIVATIONS = dict(softplus=fd.Softplus, tanh=fd.Tanh, sigmoid=fd.Sigmoid)


def camera_cs_problem(size: int) -> tuple[fd.InverseProblem, np.ndarray]:
    """The camera image under compressed sensing with 5% noise, as `reproduce images` draws it
    (its keys for the first operator and the first case), float32."""
    options = images.Options(size=size, images=("camera",), operators=("cs",), noise_levels=0.05)
    truth = images.load_image("camera", size)
    k_ops, k_noise, *_ = jr.split(jr.key(options.seed), 5)
    operator = images.make_operator("cs", options, jr.fold_in(k_ops, 0))
    x = jnp.asarray(truth.reshape(-1), jnp.float32)
    std = fd.relative_noise_std(operator, x, 0.05)
    problem = fd.InverseProblem(operator, x, noise_std=std, key=jr.fold_in(k_noise, 0))
    return problem, truth


def adam(args) -> None:
    """Adam on the deepinv-shaped decoder; prints the figures of the module docstring."""
    problem, truth = camera_cs_problem(args.size)
    if args.small:
        # The net of `reproduce images`, from its key: Adam's start there.
        k_net = jr.split(jr.key(images.Options().seed), 5)[2]
        net = fd.ConvDIP.init(
            k_net,
            image_shape=(args.size, args.size),
            channels=args.channels,
            num_upsamples=args.num_upsamples,
            activation=fd.Tanh(),
            dtype=jnp.float32,
        )
    else:
        net = fd.ConvDIP.decoder(
            jr.key(args.seed),
            (args.size, args.size),
            channels=args.adam_channels,
            layers=args.layers,
            activation=ACTIVATIONS[args.activation](),
            normalise=args.normalise,
            weight_scale=args.weight_scale,
            dtype=jnp.float32,
        )
    objective = fd.Objective(problem, net)
    dynamics = fd.OptaxBaseline(optax.adam, learning_rate=args.lr)
    every = args.save_every
    num_saves = args.adam_steps // every + 1
    # Adam's first steps move every weight by about lr at once; without normalisation the
    # output can jump by orders of magnitude before it recovers, which is not a failure here.
    kwargs = dict(
        num_saves=num_saves,
        save_params=False,
        save_signal=True,
        throw=False,
        diverge_factor=1e30,
        param_factor=1e30,
    )
    if args.small:
        what = f"the ConvDIP of reproduce images (channels={args.channels}, tanh)"
    else:
        what = (
            f"ConvDIP.decoder: channels={args.adam_channels}, layers={args.layers}, "
            f"{args.activation}, normalise={args.normalise}, weight_scale={args.weight_scale:.3g}"
        )
    print(
        f"Adam lr={args.lr:g} on {args.size}x{args.size}, {what}, "
        f"p={net.num_parameters()}, sizes {[s[0] for s in net.sizes]}, float32, "
        f"device: {jax.devices()[0].device_kind}",
        flush=True,
    )
    start = time.perf_counter()
    # Same number of saves, so the same compiled program as the timed run.
    warm = fd.solve(objective, dynamics, num_steps=num_saves - 1, **kwargs)
    jax.block_until_ready(warm.final_loss)
    first = time.perf_counter() - start
    print(f"  first call ({num_saves - 1} steps, with compilation): {first:.1f} s", flush=True)
    start, cpu = time.perf_counter(), time.process_time()
    traj = fd.solve(objective, dynamics, num_steps=args.adam_steps, **kwargs)
    jax.block_until_ready(traj.final_loss)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    psnr = np.asarray(fd.image_metrics(traj.signal, jnp.asarray(truth, jnp.float32))["psnr"])
    steps = np.round(np.asarray(traj.ts) / args.lr).astype(int)
    best = int(np.nanargmax(psnr))
    at_100 = int(np.argmin(np.abs(steps - 100)))
    print(f"  result: {traj.message}")
    print(
        f"  best PSNR {psnr[best]:.2f} dB at iteration {steps[best]} (deepinv "
        f"{DEEPINV['best_psnr']} dB at ≈{DEEPINV['best_iteration']}); "
        f"after {steps[at_100]}: {psnr[at_100]:.2f} dB (deepinv {DEEPINV['psnr_100']}); "
        f"final {psnr[-1]:.2f} dB"
    )
    print(
        f"  {1000 * wall / args.adam_steps:.1f} ms/iteration wall, "
        f"{1000 * cpu / args.adam_steps:.1f} ms/iteration process CPU "
        f"(deepinv ≈{DEEPINV['ms_per_iteration']:g} ms wall)"
    )
    marks = range(0, len(psnr), max(1, 200 // every))
    print("  PSNR every 200 iterations:", " ".join(f"{psnr[i]:.1f}" for i in marks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--num-upsamples", type=int, default=4)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--full", action="store_true", help="also time `reproduce images`")
    parser.add_argument("--adam", action="store_true", help="Adam against deepinv's DIP only")
    # deepinv's rate, 10⁻², wants the normalisation (--normalise); without it 2·10⁻³ does.
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--adam-steps", type=int, default=3000)
    parser.add_argument("--save-every", type=int, default=20)
    parser.add_argument("--adam-channels", type=int, default=64)
    parser.add_argument("--layers", type=int, default=7)
    parser.add_argument("--activation", choices=tuple(ACTIVATIONS), default="softplus")
    parser.add_argument("--normalise", action="store_true")
    parser.add_argument(
        "--small",
        action="store_true",
        help="Adam on the ConvDIP of `reproduce images` (--channels 12) instead of the decoder",
    )
    parser.add_argument("--weight-scale", type=float, default=6**0.5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.adam:
        adam(args)
        print(f"load average during the run: {np.round(os.getloadavg(), 2).tolist()}")
        return
    dtype = jnp.dtype(args.dtype)
    shape = (args.size, args.size)
    net = fd.ConvDIP.init(
        jr.key(0),
        image_shape=shape,
        channels=args.channels,
        num_upsamples=args.num_upsamples,
        dtype=dtype,
    )
    x = jr.uniform(jr.key(1), (args.size**2,), dtype)
    operators = {
        "compressed sensing (m = n/2)": fd.CompressedSensing.gaussian(
            jr.key(2), shape, args.size**2 // 2, dtype=dtype
        ),
        "Gaussian blur (FFT)": fd.Blur.gaussian(shape, 1.5, dtype=dtype),
    }
    print(
        f"ConvDIP {args.size}x{args.size}, channels={args.channels}, "
        f"num_upsamples={args.num_upsamples}, p={net.num_parameters()}, {args.dtype}, "
        f"device: {jax.devices()[0].device_kind}"
    )
    for name, op in operators.items():
        objective = fd.Objective(fd.InverseProblem(op, x), net)
        gd = fd.GradientDescent(jnp.asarray(1e-6, dtype))

        def run():
            traj = fd.solve(objective, gd, num_steps=args.steps, num_saves=2, save_params=False)
            jax.block_until_ready(traj.final_loss)

        start = time.perf_counter()
        run()
        compile_s = time.perf_counter() - start
        times = []
        for _ in range(3):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        best = min(times)
        print(
            f"  {name:<30} {args.steps / best:8.1f} steps/s   (first call {compile_s:.1f} s, "
            f"runs {', '.join(f'{t:.2f}' for t in times)} s)"
        )
    if args.full:
        env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        command = [sys.executable, "-m", "flowdip", "reproduce", "images", "--no-progress"]
        subprocess.run([*command, "--out", "results/images-bench"], check=True, env=env)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        print(f"flowdip reproduce images: {wall:.1f} s wall, {cpu:.1f} s CPU (user + system)")
    print(f"load average during the run: {np.round(os.getloadavg(), 2).tolist()}")


if __name__ == "__main__":
    main()
