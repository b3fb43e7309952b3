"""Run-steps per second of one two-layer gradient descent on three code paths, in one run.

- reduced: flowdip's exact z-space path (`Objective` chooses it), `O(mk)` per step;
- generic: the same descent in W-space with autodiff (`Objective(..., reduced=False)`);
- python loop: a Python `for` loop around a jitted reduced step (dispatch-bound).

Target: reduced ≥ 50× generic at d = 500. Usage:

    python benchmarks/bench_core.py [--n 100 --m 10 --k 200 --d 500 --steps 20000]
"""

import argparse
import time

import jax


jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.random as jr  # noqa: E402

import flowdip as fd  # noqa: E402


def _time(fn, repeats: int = 5) -> float:
    fn()  # compile and warm up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--m", type=int, default=10)
    parser.add_argument("--k", type=int, default=200)
    parser.add_argument("--d", type=int, default=500)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--loop-steps", type=int, default=2_000)
    args = parser.parse_args()

    kp, kn = jr.split(jr.key(0))
    problem = fd.InverseProblem.compressed_sensing(kp, args.m, args.n, scaling="1/m")
    net = fd.TwoLayerDIP.init(kn, d=args.d, k=args.k, n=args.n)
    reduced = fd.Objective(problem, net)
    generic = fd.Objective(problem, net, reduced=False)
    gd = fd.GradientDescent(0.5)

    def run(obj, steps):
        def go():
            traj = fd.solve(obj, gd, num_steps=steps, num_saves=2, save_params=False)
            jax.block_until_ready(traj.final_loss)

        return go

    t_reduced = _time(run(reduced, args.steps))
    generic_steps = max(args.steps // 10, 100)
    t_generic = _time(run(generic, generic_steps))

    @eqx.filter_jit
    def step(z):
        return gd.step(reduced, z)[1]

    def loop():
        z = reduced.initial_state()
        for _ in range(args.loop_steps):
            z = step(z)
        jax.block_until_ready(z)

    t_loop = _time(loop, repeats=1)

    reduced_rate = args.steps / t_reduced
    generic_rate = generic_steps / t_generic
    loop_rate = args.loop_steps / t_loop
    print(
        f"two-layer GD, n={args.n}, m={args.m}, k={args.k}, d={args.d}, float64, "
        f"{jax.devices()[0].platform}"
    )
    print(f"  reduced (z-space, while_loop)           {reduced_rate:>14,.0f} run-steps/s")
    print(f"  generic (W-space autodiff, while_loop)  {generic_rate:>14,.0f} run-steps/s")
    print(f"  python loop of a jitted reduced step    {loop_rate:>14,.0f} run-steps/s")
    print(f"  ratio reduced / generic     = {reduced_rate / generic_rate:8.1f}   (target >= 50)")
    print(f"  ratio reduced / python loop = {reduced_rate / loop_rate:8.1f}")


if __name__ == "__main__":
    main()
