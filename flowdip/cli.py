"""The `flowdip` command line (also `python -m flowdip`)."""

import argparse
import pathlib
import sys
import time
from collections.abc import Callable


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
    if not values or any(not v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _positive(kind: type) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value

    return parse


def _shard(text: str) -> tuple[int, int]:
    message = (
        f"expected i/N with integers 0 <= i < N (e.g. 0/4 for the first of four shards), "
        f"got {text!r}"
    )
    try:
        i, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(message)
    if not 0 <= i < count:
        raise argparse.ArgumentTypeError(message)
    return i, count


#: `flowdip reproduce` experiments: name -> help text.
REPRODUCTIONS = {
    "ssvm-fig1": "P1 (SSVM 2023) Figure 1: success frequency over width k and signal size n, m=10",
    "ssvm-fig2": "P1 (SSVM 2023) Figure 2: success frequency over width k and measurements m, n=40",
    "flow-vs-descent": "modified flow (orders 1 and 2), sharpness / edge of stability, inertial "
    "dynamics, second-order baselines",
    "gd-overparam": "P3-style check: empirical width of GD convergence against the certified "
    "thresholds, over n and over m",
    "flow-vs-descent-phase": "the P1 grids run by the gradient flow and by gradient descent on the "
    "same keys: both phase diagrams, where they disagree, sharpness at initialisation",
    "images": "P3 (EUSIPCO 2024) image reconstructions: ConvDIP, compressed sensing vs blur, "
    "two noise levels, early stopping",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowdip",
        description="Gradient flow versus gradient descent for Deep Inverse Prior networks.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="flow against descent at three step sizes on one compressed-sensing instance",
        description="Trains the papers' two-layer DIP on one Gaussian compressed-sensing "
        "instance by the gradient flow (Diffrax, float64) and by gradient descent at three "
        "step sizes; prints a table and writes figures.",
    )
    demo.add_argument(
        "--out",
        type=pathlib.Path,
        default=pathlib.Path("results/demo"),
        help="output folder (default: results/demo)",
    )
    demo.add_argument("--quick", action="store_true", help="a small instance, a few seconds")
    demo.add_argument("--n", type=int, help="signal size")
    demo.add_argument("--m", type=int, help="number of measurements")
    demo.add_argument("--k", type=int, help="hidden width")
    demo.add_argument("--d", type=int, help="input size (irrelevant to the dynamics)")
    demo.add_argument("--seed", type=int, help="random seed")
    demo.add_argument(
        "--scaling",
        choices=("unit", "1/m"),
        help="entries of A: N(0,1) ('unit', as in P1) or N(0,1/m) (default)",
    )
    demo.add_argument("--step-sizes", type=_floats, help="comma-separated step sizes")
    demo.add_argument("--t1", type=float, help="time horizon")

    rep = sub.add_parser(
        "reproduce",
        help="reproduce a figure of the papers (a sweep, then its phase diagram)",
        description="Runs the sweep behind one figure of the papers with their protocol (every "
        "choice exposed below), writes the dataset (results.nc), the figure and a summary. A "
        "killed run continues where it stopped with --resume.",
    )
    rep.add_argument(
        "experiment",
        choices=sorted(REPRODUCTIONS),
        help="; ".join(f"{name}: {text}" for name, text in REPRODUCTIONS.items()),
    )
    rep.add_argument("--quick", action="store_true", help="a 5x5 grid, 4 seeds, 2000 steps")
    rep.add_argument(
        "--out", type=pathlib.Path, help="output folder (default: results/<experiment>[-quick])"
    )
    rep.add_argument(
        "--scaling",
        choices=("unit", "1/m"),
        help="entries of A: N(0,1) ('unit', P1, default) or N(0,1/m)",
    )
    rep.add_argument("--step-size", type=_positive(float), help="GD step size (P1: 1)")
    rep.add_argument("--tol", type=_positive(float), help="loss threshold of success (1e-7)")
    rep.add_argument("--max-steps", type=_positive(int), help="step cap (P1: 25000)")
    rep.add_argument("--seeds", type=_positive(int), help="runs per cell (P1: 50)")
    rep.add_argument("--n", type=_ints, help="comma-separated signal sizes (overrides the grid)")
    rep.add_argument("--m", type=_ints, help="comma-separated measurement counts")
    rep.add_argument("--k", type=_ints, help="comma-separated widths")
    rep.add_argument(
        "--shard",
        type=_shard,
        metavar="i/N",
        help="run only slice i of N (0 <= i < N) of the sweep, e.g. one task of a job array",
    )
    rep.add_argument("--resume", action="store_true", help="continue a sweep started in --out")
    rep.add_argument(
        "--merge",
        nargs="+",
        type=pathlib.Path,
        metavar="DIR",
        help="join the folders written by the shards into --out and draw the figure (no runs)",
    )
    rep.add_argument("--no-progress", action="store_true", help="no progress bar")
    phase = rep.add_argument_group("flow-vs-descent-phase only")
    phase.add_argument("--figures", choices=("fig1", "fig2", "both"), help="grids (default: both)")
    phase.add_argument(
        "--step-sizes", type=_floats, help="also scan these descent step sizes (same horizon)"
    )
    phase.add_argument("--flow-budget", type=_positive(int), help="flow steps per run (10000)")
    phase.add_argument(
        "--descent-from",
        nargs="+",
        type=pathlib.Path,
        metavar="DIR",
        help="reuse finished descent sweeps (e.g. results/ssvm-fig1), one per grid, in order; "
        "one with more seeds is cut to its first --seeds",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `flowdip` command."""
    args = _parser().parse_args(argv)
    # float64 before any array exists: the flow is a float64 reference and thresholds like
    # 1e-7 on the loss are beyond float32.
    import jax

    jax.config.update("jax_enable_x64", True)
    if args.command == "demo":
        from .experiments import demo

        config = demo.DemoConfig.quick() if args.quick else demo.DemoConfig()
        overrides = {
            name: getattr(args, name)
            for name in ("n", "m", "k", "d", "seed", "scaling", "step_sizes", "t1")
            if getattr(args, name) is not None
        }
        for name in ("n", "m", "k", "d"):
            if name in overrides and overrides[name] < 1:
                print(f"flowdip demo: --{name} must be >= 1", file=sys.stderr)
                return 2
        config = demo.DemoConfig(**{**config.__dict__, **overrides})
        start = time.perf_counter()
        result = demo.run(config, args.out)
        return _wrote(start, result["paths"])
    if args.command == "reproduce" and args.experiment == "images":
        return _reproduce_images(args)
    if args.command == "reproduce":
        return _reproduce(args)
    return 2


def _wrote(start: float, paths: dict) -> int:
    """Ends a long command by naming the files it wrote; the exit status 0."""
    print(f"\nDone in {time.perf_counter() - start:.1f} s. Wrote:")
    for path in paths.values():
        print(f"  {path}")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    if args.experiment == "flow-vs-descent":
        return _flow_vs_descent(args)
    if args.experiment == "gd-overparam":
        return _reproduce_overparam(args)
    if args.experiment == "flow-vs-descent-phase":
        return _flow_vs_descent_phase(args)
    from .experiments import ssvm

    figure = {"ssvm-fig1": ssvm.fig1, "ssvm-fig2": ssvm.fig2}[args.experiment]
    defaults = {"ssvm-fig1": ssvm.SSVMOptions.fig1, "ssvm-fig2": ssvm.SSVMOptions.fig2}
    overrides = {
        name: getattr(args, name)
        for name in ("out", "scaling", "step_size", "tol", "max_steps", "seeds", "n", "m", "k")
        if getattr(args, name) is not None
    }
    if args.shard is not None:
        overrides["shard"] = args.shard
    overrides.update(resume=args.resume, progress=not args.no_progress)
    if args.merge and args.out is None:
        print(
            "flowdip reproduce: --merge needs --out (where to write the merged sweep)",
            file=sys.stderr,
        )
        return 2
    try:
        options = defaults[args.experiment](quick=args.quick, **overrides)
        start = time.perf_counter()
        paths = figure(options, merge=args.merge)
    except (ValueError, FileNotFoundError) as error:
        print(f"flowdip reproduce: {error}", file=sys.stderr)
        return 2
    return _wrote(start, paths)


def _flow_vs_descent(args: argparse.Namespace) -> int:
    from .experiments import flow_vs_descent as fvd

    overrides = {} if args.out is None else dict(out=args.out)
    options = (
        fvd.FlowVsDescentOptions.quick(**overrides)
        if args.quick
        else fvd.FlowVsDescentOptions(**overrides)
    )
    start = time.perf_counter()
    paths = fvd.run(options)
    return _wrote(start, paths)


def _reproduce_overparam(args: argparse.Namespace) -> int:
    from .experiments import overparam

    if args.shard is not None or args.merge or args.resume or args.scaling is not None:
        print(
            "flowdip reproduce gd-overparam: --shard, --merge, --resume and --scaling are not "
            "supported (A ~ N(0, 1/m) is part of the protocol)",
            file=sys.stderr,
        )
        return 2
    names = dict(n="n", m="m", k="k", seeds="seeds", max_steps="max_steps", tol="tol")
    names.update(step_size="step_size", out="out")
    overrides = {
        field: getattr(args, name)
        for name, field in names.items()
        if getattr(args, name) is not None
    }
    try:
        options = overparam.OverparamOptions.preset(
            args.quick, progress=not args.no_progress, **overrides
        )
        start = time.perf_counter()
        paths = overparam.run(options)
    except ValueError as error:
        print(f"flowdip reproduce: {error}", file=sys.stderr)
        return 2
    return _wrote(start, paths)


def _flow_vs_descent_phase(args: argparse.Namespace) -> int:
    from .experiments import flow_vs_descent_phase as fvdp

    names = dict(step_size="step_size", tol="tol", max_steps="max_steps", seeds="seeds")
    names.update(out="out", step_sizes="scan", flow_budget="flow_budget")
    overrides = {new: getattr(args, old) for old, new in names.items() if getattr(args, old)}
    if args.figures and args.figures != "both":
        overrides["figures"] = (args.figures,)
    overrides["progress"] = not args.no_progress
    try:
        options = fvdp.options_from(
            quick=args.quick, overrides=overrides, descent_from=args.descent_from
        )
        start = time.perf_counter()
        paths = fvdp.run(options)
    except ValueError as error:
        print(f"flowdip reproduce: {error}", file=sys.stderr)
        return 2
    return _wrote(start, paths)


def _reproduce_images(args: argparse.Namespace) -> int:
    # The image experiment takes --quick, --out and --max-steps (its descent steps) of the
    # shared options; the sweep options of the P1 figures do not apply to it.
    from .experiments import images

    ignored = (
        [
            f"--{name.replace('_', '-')}"
            for name in (
                "scaling",
                "step_size",
                "tol",
                "seeds",
                "n",
                "m",
                "k",
                "shard",
            )
            if getattr(args, name) is not None
        ]
        + (["--resume"] if args.resume else [])
        + (["--merge"] if args.merge else [])
    )
    if ignored:
        print(f"flowdip reproduce images: {', '.join(ignored)} do not apply", file=sys.stderr)
        return 2
    overrides = {"out": args.out} if args.out is not None else {}
    if args.max_steps is not None:
        overrides["steps"] = args.max_steps
    try:
        options = (
            images.ImagesOptions.quick(**overrides)
            if args.quick
            else images.ImagesOptions(**overrides)
        )
    except ValueError as error:
        print(f"flowdip reproduce images: {error}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    log = (lambda _: None) if args.no_progress else (lambda line: print(line, flush=True))
    paths = images.run(options, log=log)
    return _wrote(start, paths)


if __name__ == "__main__":
    sys.exit(main())
