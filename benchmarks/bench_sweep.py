"""Run-steps per second of one small grid run three ways, in one run.

- batched: `fd.sweep` (reduced two-layer path, vmapped, masked, one program per bucket);
- generic: the same runs on the W-space autodiff path, vmapped (`Objective(reduced=False)`);
- per-run loop: a Python loop over runs, each a jitted single run (`fd.run_cell`).

Every run does the same number of steps (no stop rule), so run-steps = runs × steps. Peak
memory (max RSS) is printed at the end. Target: batched ≥ 100× the per-run loop.

A second part measures a sweep's cost beyond its steps: on n = 100, m = 10, d = 500,
k = 200, 50 runs, no stop rule, the compiled sweep (compacted and `compact=False`) against a
plain `jax.vmap` of a `lax.fori_loop` over the same descent step, at 2 000 and 20 000 steps,
repeated alternately and timed by the minimum. Targets: compacted ≤ 1.2× the plain loop at
2 000 steps and ≤ 1.0× at 20 000 (within the repeats' spread), and compaction ≤ 1.1× the time
of `compact=False` where no run stops early (its segments double while no run stops: 4 host
round trips at 2 000 steps, 6 at 20 000). It also times what a sweep records that the plain
loop does not (σ_min of the Jacobian at initialisation, per run, with the drawing of the
problem that the loop does too), and the plain loop made a vmapped `while_loop` whose runs may
each stop (what per-run stopping costs by itself). The plain loop computes neither the loss
(XLA drops it, unused) nor the parameter norm at each step; a sweep's runs need both (the stop
rule, the divergence guard), and a last line times the plain loop with the norm added.

A third part runs P1's protocol (A ~ N(0,1), step 1, stop at loss < 1e-7) on cells whose runs
stop at very different steps, one chunk per cell, twice: with the sweep's compaction (stopped
runs leave the batch between segments) and as one vmapped solve per chunk (every lane steps
until the slowest run stops). It prints the useful run-steps (the sum of each run's steps)
per second of both and their ratio.

    python benchmarks/bench_sweep.py [--steps 2000 --seeds 32] [--stop-cap 25000]
        [--repeats 5] [--parts batched,overhead,stopping]
"""

import argparse
import os
import resource
import time


# As the command line does, before JAX loads LAPACK: OpenBLAS's threads (σ_min's eigensolver)
# spin against XLA's and any other process for the cores; on a loaded 2-core machine they made
# σ_min at initialisation 8 times as slow (1 s of a 1.2 s sweep of 2 000 steps).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax  # noqa: E402


jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import flowdip as fd  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=32)
    parser.add_argument("--loop-runs", type=int, default=16)
    parser.add_argument("--stop-cap", type=int, default=25000, help="step cap of part two")
    parser.add_argument("--stop-k", type=int, nargs="+", default=[848, 2635])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of part two")
    parser.add_argument("--parts", default="batched,overhead,stopping")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if "batched" in parts:
        batched_vs_loop(args)
    if "overhead" in parts:
        overhead(args)
    if "stopping" in parts:
        stopping(args)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"  peak memory (max RSS)  = {peak:7.2f} GB   (target < 4)")


def batched_vs_loop(args) -> None:
    """Part one: the batched sweep against W-space autodiff and a per-run loop."""

    grid = fd.Grid(n=[20, 40], m=[10], k=[100, 200], seeds=args.seeds, d=10)
    instance = fd.Instance(scaling="1/m")
    dyn = fd.GradientDescent(0.5)
    runs = grid.num_runs

    def batched():
        ds = fd.sweep(grid, dynamics=dyn, num_steps=args.steps, instance=instance, progress=False)
        return ds.final_loss.values

    batched()  # compile
    start = time.perf_counter()
    batched()
    t_batched = time.perf_counter() - start

    @eqx.filter_jit
    def generic(keys, n, k):
        def one(key):
            obj = instance.objective(key, n=n, m=10, k=k, d=10)
            obj = fd.Objective(obj.problem, obj.generator, obj.loss, reduced=False)
            traj = fd.solve(
                obj, dyn, num_steps=args.steps, num_saves=1, save_params=False, throw=False
            )
            return traj.final_loss

        return jax.vmap(one)(keys)

    cells = [(n, k) for n in grid.n for k in grid.k]
    keysets = {
        (n, k): jnp.stack([fd.run_key(0, n, 10, s) for s in range(args.seeds)]) for n, k in cells
    }
    for n, k in cells:
        jax.block_until_ready(generic(keysets[n, k], n, k))
    start = time.perf_counter()
    for n, k in cells:
        jax.block_until_ready(generic(keysets[n, k], n, k))
    t_generic = time.perf_counter() - start

    single = eqx.filter_jit(fd.run_cell)
    loop_cells = [(n, k, s) for n, k in cells for s in range(args.loop_runs // len(cells))]
    for n, k in cells:
        jax.block_until_ready(
            single(
                instance, dyn, key=fd.run_key(0, n, 10, 0), n=n, m=10, k=k, d=10, horizon=args.steps
            )
        )
    start = time.perf_counter()
    for n, k, s in loop_cells:
        out = single(
            instance, dyn, key=fd.run_key(0, n, 10, s), n=n, m=10, k=k, d=10, horizon=args.steps
        )
        jax.block_until_ready(out)
    t_loop = (time.perf_counter() - start) / len(loop_cells) * runs

    rates = [runs * args.steps / t for t in (t_batched, t_generic, t_loop)]
    print(
        f"grid n={list(grid.n)}, m=10, k={list(grid.k)}, {args.seeds} seeds = {runs} runs "
        f"x {args.steps} steps, float64, {len(jax.devices())} {jax.devices()[0].platform} "
        "device(s)"
    )
    for name, rate in zip(("batched sweep", "generic W-space, vmapped", "per-run loop"), rates):
        print(f"  {name:<26} {rate:>14,.0f} run-steps/s")
    print(f"  batched / per-run loop = {rates[0] / rates[2]:7.1f}   (target >= 100)")
    print(f"  batched / generic      = {rates[0] / rates[1]:7.1f}")


def overhead(args) -> None:
    """Part two: a compiled sweep against a plain vmapped loop of the same step."""
    n, m, k, d, seeds = 100, 10, 200, 500, 50
    grid = fd.Grid(n=[n], m=[m], k=[k], seeds=seeds, d=d)
    instance = fd.Instance(scaling="1/m")
    dyn = fd.GradientDescent(0.5)
    keys = jnp.stack([fd.run_key(0, n, m, s) for s in range(seeds)])

    @eqx.filter_jit
    def plain(keys, steps):
        def one(key):
            obj = instance.objective(key, n=n, m=m, k=k, d=d)
            z = jax.lax.fori_loop(0, steps, lambda i, z: dyn.step(obj, z)[1], obj.initial_state())
            return obj.value(z)

        return jax.vmap(one)(keys)

    @eqx.filter_jit
    def plain_stopping(keys, steps):
        # The same loop, but each run may stop on its own (as every sweep's runs do): a
        # vmapped while_loop, which selects every run's state against its own flag each step.
        def one(key):
            obj = instance.objective(key, n=n, m=m, k=k, d=d)

            def body(carry):
                i, z, _ = carry
                loss, z = dyn.step(obj, z)
                return i + 1, z, loss < 1e-300

            def cond(carry):
                return (carry[0] < steps) & ~carry[2]

            start = (jnp.asarray(0), obj.initial_state(), jnp.asarray(False))
            return obj.value(jax.lax.while_loop(cond, body, start)[1])

        return jax.vmap(one)(keys)

    @eqx.filter_jit
    def plain_norm(keys, steps):
        # The same loop, with the parameter norm at every step (a sweep's divergence guard).
        def one(key):
            obj = instance.objective(key, n=n, m=m, k=k, d=d)

            def body(i, carry):
                z, top = carry
                return dyn.step(obj, z)[1], jnp.maximum(top, jnp.linalg.norm(z))

            z, top = jax.lax.fori_loop(0, steps, body, (obj.initial_state(), jnp.zeros(())))
            return obj.value(z) + top

        return jax.vmap(one)(keys)

    @eqx.filter_jit
    def sigma0(keys):
        def one(key):
            return instance.objective(key, n=n, m=m, k=k, d=d).generator.sigma_min_jacobian()

        return jax.vmap(one)(keys)

    print(
        f"fixed cost: n = {n}, m = {m}, k = {k}, d = {d}, {seeds} runs, float64, no stop rule; "
        f"minimum of {args.repeats} alternated repeats"
    )
    for steps in (2000, 20000):
        calls = {
            "plain vmapped fori_loop": lambda: jax.block_until_ready(plain(keys, steps)),
            "sweep, compacted": lambda: fd.sweep(
                grid, dynamics=dyn, num_steps=steps, instance=instance, progress=False
            ),
            "sweep, compact=False": lambda: fd.sweep(
                grid,
                dynamics=dyn,
                num_steps=steps,
                instance=instance,
                progress=False,
                compact=False,
            ),  # fmt: skip
            "plain, runs stop each": lambda: jax.block_until_ready(plain_stopping(keys, steps)),
            "σ_min at init alone": lambda: jax.block_until_ready(sigma0(keys)),
            "plain, + ‖θ‖ each step": lambda: jax.block_until_ready(plain_norm(keys, steps)),
        }
        times = {name: [] for name in calls}
        for name, call in calls.items():
            call()  # compile
        for _ in range(args.repeats):
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
        best = {name: min(t) for name, t in times.items()}
        base = best["plain vmapped fori_loop"]
        print(f"  {steps} steps:")
        for name, t in best.items():
            spread = max(times[name]) / t
            print(
                f"    {name:<26} {t / (seeds * steps) * 1e6:7.2f} µs per run-step   "
                f"{t / base:5.2f}× the plain loop   (slowest repeat {spread:.2f}× the fastest)"
            )
        target = 1.2 if steps == 2000 else 1.0
        ratio = best["sweep, compacted"] / base
        print(f"    compacted / plain loop     = {ratio:5.2f}   (target <= {target})")
        ratio = best["sweep, compacted"] / best["sweep, compact=False"]
        print(f"    compacted / compact=False  = {ratio:5.2f}   (target <= 1.1)")
        # The plain loop has no divergence guard; a sweep's runs need one (the parameter
        # norm at every step), so this is the comparison that holds the sweep's own cost.
        ratio = best["sweep, compacted"] / best["plain, + ‖θ‖ each step"]
        print(f"    compacted / plain + ‖θ‖    = {ratio:5.2f}   (target <= 1.0 at 20 000 steps)")


def stopping(args) -> None:
    """Part three: compaction against one vmapped solve per chunk, on P1's protocol."""
    grid = fd.Grid(n=[10], m=[10], k=args.stop_k, seeds=50, d=10)
    kwargs = dict(
        dynamics=fd.GradientDescent(1.0),
        num_steps=args.stop_cap,
        stop=fd.LossBelow(1e-7),
        chunk_size=grid.seeds,
        progress=False,
    )
    times = {}
    for compact in (True, False):
        start = time.perf_counter()
        ds = fd.sweep(grid, compact=compact, **kwargs)
        first = time.perf_counter() - start
        start = time.perf_counter()
        ds = fd.sweep(grid, compact=compact, **kwargs)
        times[compact] = (first, time.perf_counter() - start)
    steps = ds.num_steps.values
    useful = float(steps.sum())
    print(
        f"P1 protocol, n = m = 10, k = {list(grid.k)}, {grid.seeds} seeds, cap {args.stop_cap}: "
        f"runs stop at {int(steps.min())}–{int(steps.max())} steps (median "
        f"{int(np.median(steps))}); waste of one batch per cell "
        f"{grid.seeds * steps.max(axis=-1).sum() / useful:.1f}x"
    )
    for compact, name in ((True, "compacted"), (False, "one vmapped solve per chunk")):
        first, second = times[compact]
        print(
            f"  {name:<28} {useful / second:>12,.0f} useful run-steps/s  "
            f"({second:.1f} s; first call {first:.1f} s)"
        )
    ratio = times[False][1] / times[True][1]
    print(f"  one solve / compacted  = {ratio:7.2f}   (target >= 1.5)")


if __name__ == "__main__":
    main()
