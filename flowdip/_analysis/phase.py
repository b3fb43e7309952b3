"""Flow and descent phase diagrams side by side: the per-cell comparison of two sweeps run on
the same keys."""

import numpy as np


def disagreement(descent, flow) -> dict:
    """Compares a descent sweep and a flow sweep run on the same grid and keys, cell by cell.

    Only seeds present in both datasets are compared (a flow sweep may use fewer seeds).

    **Arguments:**

    - `descent`, `flow`: sweep datasets ([`flowdip.sweep`][]) over the same `n`, `m`, `k`.

    **Returns:** a dict of arrays of shape `(n, m, k)`: `descent` and `flow` (success
    frequencies), `difference` (`descent − flow`: positive where descent succeeds more
    often, zero where both diagrams agree), and `mismatch` (the fraction of runs whose
    outcomes differ: a cell can have equal frequencies yet disagree run by run); plus `seeds`,
    the number of seeds compared.
    """
    for dim in ("n", "m", "k"):
        a, b = descent[dim].values, flow[dim].values
        if a.shape != b.shape or np.any(a != b):
            raise ValueError(f"The two sweeps have different {dim} values: {a} and {b}.")
    seeds = min(descent.sizes["seed"], flow.sizes["seed"])
    d = descent["converged"].isel(seed=slice(0, seeds)).values.astype(bool)
    f = flow["converged"].isel(seed=slice(0, seeds)).values.astype(bool)
    freq_d, freq_f = d.mean(-1), f.mean(-1)
    return dict(
        descent=freq_d,
        flow=freq_f,
        difference=freq_d - freq_f,
        mismatch=(d != f).mean(-1),
        seeds=seeds,
    )
