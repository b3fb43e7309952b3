"""The options of `flowdip reproduce flow-vs-descent-phase` (see its module)."""

import dataclasses
import os
import pathlib
from collections.abc import Sequence

import numpy as np

from .._dynamics import GradientFlow
from . import _p1
from ._p1 import FIGURES


def _figures(text: str) -> tuple[str, ...]:
    """`--figures`: `fig1`, `fig2`, `both` or a comma-separated list."""
    return tuple(FIGURES) if text == "both" else tuple(text.split(","))


@dataclasses.dataclass(frozen=True)
class Options:
    """Every choice of the flow-vs-descent phase experiment.

    **Arguments:**

    - `figures`: which grids, among `fig1` (P1 Figure 1: `m = 10`, `n` and `k` vary) and
      `fig2` (Figure 2: `n = 40`, `m` and `k` vary), comma-separated, or `both`; the grids
      and keys are those of `ssvm-fig1` and `ssvm-fig2`.
    - `quick_grids`: the reproductions' quick 5 × 5 grids (4 seeds, 2000 steps), what
      `--quick` sets.
    - `seeds`: runs per cell (default: the grid's, 50 for the full grids).
    - `step_size`: the descent's `η` (P1: 1).
    - `tol`: success threshold on the loss (P1: 1e-7).
    - `max_steps`: the descent's step cap (P1: 25 000); the flow's horizon is `max_steps · η`.
    - `flow_rtol`: the flow's relative tolerance.
    - `flow_atol`: the flow's absolute tolerance.
    - `flow_solver`: `stiff` (`GradientFlow.stiff`: Kvaerno5 with the structured linear
      solve; a few hundred steps per run wherever the flow is stiff) or `tsit5` (the explicit
      solver, about `λ_max/3` steps per unit of time).
    - `flow_budget`: the flow's step budget per run (default: the step cap, at most 10 000).
    - `reach_seeds`: the runs per cell (the first ones) whose reachability (is `y` among the
      measurements the network can produce?) is computed, a linear program each, and drawn on
      the phase diagrams; 0: none.
    - `failing`: grids (comma-separated) whose every descent that fails by the cap is run
      again, on its own keys, to 4× the cap, measuring at the cap its saturated units,
      `η·λ_max` and whether its loss still falls over the last 5 000 steps (default: none).
    - `long_horizon`: a second flow sweep to this horizon (e.g. `1e8`), to tell "has not
      converged by `max_steps · η`" from "does not converge".
    - `long_seeds`: the runs per cell (the first ones) of the long-horizon sweep: it costs
      about as much as the standard one, and its question needs fewer runs.
    - `scan`: other step sizes for the descent, each run with the step cap that keeps the
      horizon `max_steps · step_size` (empty: no scan).
    - `cells`: cells of the runs figure as `(figure, n, m, k, seed)`; default: chosen from the
      results (the cells where the two diagrams disagree most, and one where both succeed).
    - `descent_from`: folders of descent sweeps already run with the P1 protocol (e.g.
      `results/ssvm-fig1` of `flowdip reproduce ssvm-fig1`), one per grid in the order of
      `figures`: their results are used as they are when their grid and protocol match and
      they hold at least `seeds` seeds (cut to the first ones; no `loss_rose` then: the
      hatching is left out).
    - `out`: output folder.
    - `progress`: progress bars.
    - `seed`: base seed of the run keys.
    """

    figures: str | Sequence[str] = dataclasses.field(
        default=("fig1", "fig2"), metadata=dict(parse=_figures, metavar="fig1|fig2|both")
    )
    quick_grids: bool = dataclasses.field(default=False, metadata=dict(cli=False))
    seeds: int | None = dataclasses.field(default=None, metadata=dict(positive=True))
    step_size: float = dataclasses.field(default=1.0, metadata=dict(positive=True))
    tol: float = dataclasses.field(default=1e-7, metadata=dict(positive=True))
    max_steps: int | None = dataclasses.field(default=None, metadata=dict(positive=True))
    flow_rtol: float = dataclasses.field(default=1e-6, metadata=dict(positive=True))
    flow_atol: float = dataclasses.field(default=1e-9, metadata=dict(positive=True))
    flow_solver: str = dataclasses.field(default="stiff", metadata=dict(choices=("stiff", "tsit5")))
    flow_budget: int | None = dataclasses.field(default=None, metadata=dict(positive=True))
    long_horizon: float | None = dataclasses.field(default=None, metadata=dict(positive=True))
    long_seeds: int = 10
    reach_seeds: int = 10
    failing: str | Sequence[str] = dataclasses.field(
        default=(), metadata=dict(parse=_figures, metavar="fig1|fig2|both")
    )
    scan: Sequence[float] = dataclasses.field(
        default=(), metadata=dict(flag="step_sizes", positive=True)
    )
    cells: Sequence[Sequence[str | int]] | None = dataclasses.field(
        default=None, metadata=dict(cli=False)
    )
    descent_from: Sequence[str | os.PathLike] = dataclasses.field(
        default=(), metadata=dict(nargs="+", metavar="DIR")
    )
    out: str | os.PathLike | None = dataclasses.field(
        default=None, metadata=dict(default_text="results/flow-vs-descent-phase[-quick]")
    )
    progress: bool = True
    seed: int = 0

    def __post_init__(self):
        figures = (self.figures,) if isinstance(self.figures, str) else tuple(self.figures)
        bad = [f for f in figures if f not in FIGURES]
        if not figures or bad:
            raise ValueError(f"figures must be among {list(FIGURES)}; got figures={figures!r}.")
        object.__setattr__(self, "figures", figures)
        if self.flow_solver not in ("stiff", "tsit5"):
            raise ValueError(
                f"flow_solver must be 'stiff' or 'tsit5'; got flow_solver={self.flow_solver!r}."
            )
        if self.long_horizon is not None:
            value = float(self.long_horizon)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"long_horizon must be a positive number; got {value!r}.")
            object.__setattr__(self, "long_horizon", value)
        for name in ("step_size", "tol", "flow_rtol", "flow_atol"):
            value = float(getattr(self, name))
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number; got {name}={value!r}.")
            object.__setattr__(self, name, value)
        scan = tuple(float(v) for v in self.scan)
        if any(not (np.isfinite(v) and v > 0) for v in scan):
            raise ValueError(f"scan must hold positive step sizes; got scan={scan!r}.")
        object.__setattr__(self, "scan", scan)
        for name in ("reach_seeds", "long_seeds"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 0:
                raise ValueError(f"{name} must be an integer >= 0; got {name}={value!r}.")
        failing = (self.failing,) if isinstance(self.failing, str) else tuple(self.failing)
        if any(f not in figures for f in failing):
            raise ValueError(f"failing must be among the figures {figures}; got {failing!r}.")
        object.__setattr__(self, "failing", failing)
        for name in ("seeds", "max_steps", "flow_budget"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
                raise ValueError(f"{name} must be an integer >= 1; got {name}={value!r}.")
        if self.cells is not None:
            cells = tuple((str(c[0]), *(int(v) for v in c[1:])) for c in self.cells)
            if any(len(c) != 5 or c[0] not in figures for c in cells):
                raise ValueError(f"cells must be (figure, n, m, k, seed); got cells={cells!r}.")
            object.__setattr__(self, "cells", cells)
        if self.out is None:
            name = "flow-vs-descent-phase" + ("-quick" if self.quick_grids else "")
            object.__setattr__(self, "out", pathlib.Path("results") / name)
        object.__setattr__(self, "out", pathlib.Path(self.out))
        folders = tuple(pathlib.Path(p) for p in self.descent_from)
        if len(folders) > len(figures):
            raise ValueError(
                f"descent_from has {len(folders)} folders for {len(figures)} grids "
                f"({', '.join(figures)})."
            )
        if missing := [str(p) for p in folders if not p.is_dir()]:
            # Caught here, not after the flow: a mistyped folder would otherwise cost a whole
            # descent sweep before anyone noticed.
            raise ValueError(f"descent_from: no such folder: {', '.join(missing)}.")
        object.__setattr__(self, "descent_from", folders)

    @classmethod
    def quick(cls, **overrides) -> "Options":
        """The quick 5 × 5 grids of `ssvm-fig1 --quick` and `ssvm-fig2 --quick` (4 seeds,
        2000 steps), both dynamics."""
        return cls(**{"quick_grids": True, **overrides})

    def descent_folder(self, figure: str) -> pathlib.Path | None:
        """The `descent_from` folder given for `figure`, if any."""
        return dict(zip(self.figures, self.descent_from)).get(figure)

    def ssvm(self, figure: str) -> _p1.SSVMOptions:
        """The P1 reproduction's options for `figure` (grid, seeds, cap), with the overrides."""
        overrides = dict(step_size=self.step_size, tol=self.tol, seed=self.seed)
        if self.seeds is not None:
            overrides["seeds"] = int(self.seeds)
        if self.max_steps is not None:
            overrides["max_steps"] = int(self.max_steps)
        cls = _p1.OPTIONS[figure]
        make = cls.quick if self.quick_grids else cls
        return make(out=self.out / figure / "descent", progress=self.progress, **overrides)

    def flow(self, cap: int) -> GradientFlow:
        """The flow: `flow_solver` under max-norm control, budget `flow_budget` (default:
        the step cap, at most 10 000)."""
        budget = self.flow_budget or min(cap, 10_000)
        make = GradientFlow.stiff if self.flow_solver == "stiff" else GradientFlow.for_sweeps
        return make(rtol=self.flow_rtol, atol=self.flow_atol, max_steps=budget)
