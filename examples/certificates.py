"""Theory certificates on worked examples: the certificate of a flow and a descent run where
R' < R holds, each loss family's decay against its predicted shape, and a noisy problem where
the error falls, then rises (early stopping). Writes the figures of docs/certificates.md.

Usage: python examples/certificates.py [OUT_DIR] [--quick]
"""

import sys

import jax


jax.config.update("jax_enable_x64", True)

from flowdip.experiments import certificates  # noqa: E402


def main(out: str = "results/certificates", quick: bool = False) -> dict:
    paths = {}
    paths.update(certificates.descent_and_flow(out))
    paths.update({f"loss_{k}": v for k, v in certificates.loss_families(out, quick=quick).items()})
    paths.update(
        {f"early_{k}": v for k, v in certificates.early_stopping(out, quick=quick).items()}
    )
    for path in paths.values():
        print(path)
    return paths


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--quick"]
    main(args[0] if args else "results/certificates", quick="--quick" in sys.argv)
