"""The stiff gradient flow against Tsit5 on P1 runs, side by side in one run, as ratios.

Each line integrates one P1 run (`A ~ N(0, 1)`, the sigmoid two-layer DIP, float64) to
`t = 25 000` with the stop rule `F < 1e-7`, under the same PID tolerances (rtol 1e-6,
atol 1e-9, the max norm of sweeps), once with `GradientFlow.stiff()` (Kvaerno5 with the
structured linear solve) and once with Tsit5. Walls are the best of `--repeats` compiled runs.

Targets on a 2-core CPU:

- the stiff flow takes ≤ 3 000 steps on every cell;
- its wall per run is ≤ 1/20 of Tsit5's wherever Tsit5 needs ≥ 100 000 steps;
- its wall per step is ≤ 10× a Tsit5 step at k = 8192.

Usage:

    python benchmarks/bench_flow.py [--repeats 2] [--cells 10,512,28 40,40,512 ...]
"""

import argparse
import time

import jax


jax.config.update("jax_enable_x64", True)

import flowdip as fd  # noqa: E402


# (m, n, k, run): the stiff P1 cell of Figure 1 (three runs: the flow converges in none) and
# the square cells of Figure 2 (m = n = 40) at three widths.
CELLS = [
    (10, 512, 28, 0),
    (10, 512, 28, 1),
    (10, 512, 28, 2),
    (40, 40, 512, 0),
    (40, 40, 2048, 0),
    (40, 40, 8192, 0),
]
T1 = 25_000.0


def _time(fn, repeats: int):
    out = fn()  # compile and warm up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def _outcome(traj) -> str:
    if traj.result == fd.RESULTS.converged:
        return f"converged at t = {float(traj.stop_time):.0f}"
    if traj.result == fd.RESULTS.max_steps_reached:
        at = float(traj.stop_time)
        return "reached the horizon" if at >= 0.999 * T1 else f"step budget at t = {at:.0f}"
    return str(traj.result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--cells", nargs="*", default=None, help="m,n,k[,run] … (default: the cells above)"
    )
    args = parser.parse_args()
    cells = CELLS
    if args.cells:
        cells = [
            tuple(int(v) for v in c.split(",")) + (0,) * (4 - len(c.split(","))) for c in args.cells
        ]

    stiff = fd.GradientFlow.stiff(max_steps=1_000_000)
    tsit5 = fd.GradientFlow.for_sweeps(max_steps=2_000_000)
    stop = fd.LossBelow(1e-7)
    print(
        f"{'m':>3} {'n':>4} {'k':>5} {'run':>3} | {'stiff steps':>11} {'Tsit5 steps':>11} | "
        f"{'stiff s':>8} {'Tsit5 s':>8} {'wall ratio':>10} | {'step ratio':>10} | outcome"
    )
    verdicts = []
    for m, n, k, run in cells:
        obj = fd.Instance().objective(fd.run_key(0, n, m, run), n=n, m=m, k=k, d=10)
        walls, trajs = {}, {}
        for name, flow in (("stiff", stiff), ("tsit5", tsit5)):

            def go(flow=flow):
                traj = fd.solve(obj, flow, t1=T1, stop=stop, num_saves=2)
                jax.block_until_ready(traj.final_loss)
                return traj

            walls[name], trajs[name] = _time(go, args.repeats)
        s_steps, t_steps = int(trajs["stiff"].num_steps), int(trajs["tsit5"].num_steps)
        ratio = walls["stiff"] / walls["tsit5"]
        step_ratio = (walls["stiff"] / s_steps) / (walls["tsit5"] / t_steps)
        same = trajs["stiff"].result == trajs["tsit5"].result
        outcome = _outcome(trajs["stiff"])
        print(
            f"{m:>3} {n:>4} {k:>5} {run:>3} | {s_steps:>11} {t_steps:>11} | "
            f"{walls['stiff']:>8.3f} {walls['tsit5']:>8.3f} {ratio:>10.4f} | {step_ratio:>10.2f} | "
            f"{outcome}{'' if same else ' (Tsit5: ' + _outcome(trajs['tsit5']) + ')'}",
            flush=True,
        )
        verdicts.append(("≤ 3 000 steps", f"{m},{n},{k}", s_steps <= 3000))
        if t_steps >= 100_000:
            verdicts.append(("wall ≤ 1/20 of Tsit5's", f"{m},{n},{k}", ratio <= 1 / 20))
        if k == 8192:
            verdicts.append(("step ≤ 10× a Tsit5 step", f"{m},{n},{k}", step_ratio <= 10))
    print()
    for target, cell, ok in verdicts:
        print(f"{'met' if ok else 'NOT MET':>8}  {target:<24} ({cell})")


if __name__ == "__main__":
    main()
