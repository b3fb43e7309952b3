"""Text reports of results: data in, text out."""

import jax.numpy as jnp
import numpy as np

from .._theory.results import Certificate
from .._typing import checked


@checked
def certificate_table(certificate: Certificate) -> str:
    """A text table of a certificate: every quantity, its value, and the formula it came from
    (`Certificate.REFERENCES`); sampled estimates are marked `(estimate)`. With a run
    (`certificate.path`), the checks of the run follow.

    **Arguments:**

    - `certificate`: an unbatched [`flowdip.Certificate`][].

    **Returns:** the table, one quantity per line.
    """
    lines = []
    for name, ref in certificate.REFERENCES.items():
        value = np.asarray(getattr(certificate, name))
        text = f"{bool(value)}" if value.dtype == bool else f"{float(value):.6g}"
        kind = " (estimate)" if name in certificate.estimates else ""
        lines.append(f"{name:>24} = {text:<12}{kind}  {ref}")
    if certificate.path is not None:
        p = certificate.path
        lines.append("")
        lines.append(f"run ({'descent' if p.is_descent else 'flow'}):")
        vmin = float(jnp.min(jnp.where(p.valid, p.sigma_min, jnp.inf)))
        dmax = float(jnp.max(jnp.where(p.valid, p.displacement, 0)))
        lines.append(
            f"{'min σ_min(J_g) on the path':>34} = {vmin:.6g} against f σ₀ = "
            f"{p.sigma_fraction * float(certificate.sigma0):.6g}: {bool(p.sigma_ok)} (§10.4)"
        )
        lines.append(
            f"{'max ‖θ − θ₀‖':>34} = {dmax:.6g} against R' = {float(p.radius):.6g}: "
            f"{bool(p.displacement_ok)} (R' < R: {bool(p.condition)}) (§10.4)"
        )
        lines.append(f"{'observed loss ≤ predicted bound':>34}: {bool(p.loss_ok)} (§10.4)")
        lines.append(
            f"{'path length':>34} = {float(p.path_length):.6g} against the pathwise "
            f"certificate {float(p.path_certificate):.6g}: {bool(p.path_ok)} (§10.4)"
        )
        lines.append(
            f"{'observed rate':>34} = {float(p.observed_rate):.6g}; predicted "
            f"{float(p.predicted_rate):.6g}; composite NTK 2λ_min(AJJᵀAᵀ) = "
            f"{float(p.composite_rate):.6g} (§10.4)"
        )
    return "\n".join(lines)
