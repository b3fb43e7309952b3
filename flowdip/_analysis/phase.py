"""Flow and descent phase diagrams side by side: the flow used in sweeps, and the per-cell
comparison of two sweeps run on the same keys."""

import diffrax as dfx
import equinox as eqx
import numpy as np
import optimistix as optx

from .._dynamics.dynamics import _check_tolerances, AbstractFlow
from .._objective import Objective


class SweepGradientFlow(AbstractFlow):
    """The gradient flow `θ' = −∇F(θ)` as sweeps run it: Tsit5 under a PID controller that
    measures the local error in the max norm, with a per-run step budget.

    The max norm makes a padded, masked run take the steps of the unpadded run (the default
    RMS norm is diluted by the padded zeros, STYLE.md §5); the budget ends runs that neither
    converge nor reach the horizon, which a stiff non-converging flow would otherwise take
    hundreds of thousands of steps to do. A run that ends on the budget has result
    `max_steps_reached` with `stop_time` below the horizon.

    **Arguments:**

    - `rtol`, `atol`: tolerances of the controller.
    - `max_steps`: the step budget of each run (accepted and rejected steps).
    """

    solver: dfx.AbstractSolver = dfx.Tsit5()
    rtol: float = eqx.field(static=True, converter=float, default=1e-6)
    atol: float = eqx.field(static=True, converter=float, default=1e-9)
    max_steps: int = eqx.field(static=True, default=10_000)

    def __check_init__(self):
        _check_tolerances(self.rtol, self.atol, self.max_steps)

    @property
    def needs_float64(self) -> bool:
        """Tolerances below float32 resolution need float64 states."""
        return self.rtol < 1e-6 or self.atol < 1e-7

    def vector_field(self, objective: Objective):
        """`−∇F`, read from the objective."""
        return objective.vector_field

    def controller(self) -> dfx.AbstractStepSizeController:
        """A PID controller at (`rtol`, `atol`) with the max norm."""
        return dfx.PIDController(rtol=self.rtol, atol=self.atol, norm=optx.max_norm)


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
