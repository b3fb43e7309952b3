"""Steps per second of gradient descent on the 64×64 ConvDIP (the `reproduce images` net),
and optionally the wall time of the full `flowdip reproduce images`.

    python benchmarks/bench_images.py [--size 64 --channels 16 --num-upsamples 4 --steps 200]
                                      [--dtype float32] [--full]

Reports the compile time (first call) and the best of three timed runs, per operator; with
`--full`, runs `flowdip reproduce images` in a subprocess and reports its wall and CPU time.
"""

import argparse
import os
import resource
import subprocess
import sys
import time

import jax


jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import numpy as np  # noqa: E402

import flowdip as fd  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--num-upsamples", type=int, default=4)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--full", action="store_true", help="also time `reproduce images`")
    args = parser.parse_args()
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
