"""Compaction of a flow sweep: the same uneven flow sweep with and without dropping its stopped
runs between segments, timed after compilation.

P1's protocol (A ~ N(0,1), stop at loss < 1e-7) under the sweeps' flow
([`flowdip.GradientFlow.for_sweeps`][], Tsit5, max-norm control) on cells whose runs stop
after very different numbers of solver steps, one chunk per cell. Each way runs twice; the
call compiles; the calls after it alternate between the two ways (`--repeat` each) and the
fastest of each is kept, which tames a busy machine. It prints the spread of solver steps and
the wall of both ways. `--ratio` sets the factor by which a batch shrinks (the engine's
`_COMPACT_RATIO`, 2), to see what another would gain.

    python benchmarks/bench_flow_sweep.py [--n 10] [--k 1024] [--seeds 16] [--budget 4000]
"""

import argparse
import time

import jax


jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

import flowdip as fd  # noqa: E402
from flowdip._sweep import engine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10, help="n = m of the cells")
    parser.add_argument("--k", type=int, nargs="+", default=[1024])
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--t1", type=float, default=25_000.0)
    parser.add_argument("--budget", type=int, default=4000, help="solver steps per run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ratio", type=int, default=None)
    args = parser.parse_args()
    if args.ratio is not None:
        engine._COMPACT_RATIO = args.ratio

    grid = fd.Grid(n=[args.n], m=[args.n], k=args.k, seeds=args.seeds, d=10)
    kwargs = dict(
        dynamics=fd.GradientFlow.for_sweeps(max_steps=args.budget),
        t1=args.t1,
        stop=fd.LossBelow(1e-7),
        chunk_size=grid.seeds,
        bucket_ratio=1.0,
        progress=False,
    )
    first, times, results = {}, {True: [], False: []}, {}
    for compact in (True, False):
        start = time.perf_counter()
        fd.sweep(grid, compact=compact, **kwargs)
        first[compact] = time.perf_counter() - start
    for _ in range(args.repeat):
        for compact in (True, False):
            start = time.perf_counter()
            results[compact] = fd.sweep(grid, compact=compact, **kwargs)
            times[compact].append(time.perf_counter() - start)
    ds = results[True]
    steps = ds.num_steps.values
    same = all(
        np.array_equal(ds[v].values, results[False][v].values)
        for v in ("result", "num_steps", "stop_time", "final_loss")
    )
    print(
        f"P1 protocol, flow, n = m = {args.n}, k = {list(grid.k)}, {grid.seeds} seeds, "
        f"budget {args.budget} solver steps: runs stop after {int(steps.min())}–"
        f"{int(steps.max())} accepted steps (median {int(np.median(steps))}); lane-steps of "
        f"one batch per cell / run-steps {grid.seeds * steps.max(axis=-1).sum() / steps.sum():.1f}"
    )
    ratio = engine._COMPACT_RATIO
    for compact, name in ((True, f"compacted (ratio {ratio})"), (False, "one vmapped solve/chunk")):
        walls = ", ".join(f"{t:.2f}" for t in times[compact])
        best = min(times[compact])
        print(f"  {name:<26} {best:6.2f} s   ({walls}; first call {first[compact]:.1f} s)")
    print(f"  one solve / compacted  = {min(times[False]) / min(times[True]):5.2f}")
    print(f"  same codes, steps, stop times and losses: {same}")


if __name__ == "__main__":
    main()
