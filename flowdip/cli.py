"""The `flowdip` command line (also `python -m flowdip`)."""

import argparse
import pathlib
import sys
import time


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
    if not values or any(not v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


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
        print(f"\nDone in {time.perf_counter() - start:.1f} s. Wrote:")
        for path in result["paths"].values():
            print(f"  {path}")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
