"""The P1 protocol (Buskulic, Fadili, Quéau, SSVM 2023, §4) and the grids of its two figures,
shared by the experiments that run it (`ssvm-fig1`, `ssvm-fig2`, `flow-vs-descent-phase`).

The protocol of P1 (its §4, see docs/theory.md §11.1): noise-free Gaussian compressed sensing, the
two-layer DIP initialised as in its assumptions A-1…A-4 (`u` uniform on the sphere, `W₀` with
N(0, 1) entries, Rademacher `V`), the sigmoid activation, `A` and `x̄` with i.i.d. N(0, 1)
entries, gradient descent with a fixed step of 1, stopped once the loss falls below 1e-7 or
after 25 000 steps, 50 runs per cell; the figures show the frequency of reaching the threshold.

P1 leaves blank the grids, `m` in Figure 1, `n` in Figure 2 and `d`. Ours: `d = 10` (it does
not affect the dynamics, docs/theory.md §3.2); Figure 1 at `m = 10` with `n` from 4 to 512 and `k`
from 16 to 8192; Figure 2 at `n = 40` with `m` from 2 to 40 and `k` from 4 to 8192, all
log-spaced. Small exploratory runs (4 seeds) placed the 50% line inside both grids.
"""

import argparse
import dataclasses
import os
import pathlib
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from .._sweep import Grid


#: Figure 1: `m` fixed, `n` and `k` vary.
FIG1_N = (4, 6, 10, 15, 23, 36, 56, 88, 136, 212, 329, 512)
FIG1_M = (10,)
FIG1_K = (16, 28, 50, 88, 155, 273, 481, 848, 1495, 2635, 4646, 8192)
#: Figure 2: `n` fixed, `m` and `k` vary.
FIG2_N = (40,)
FIG2_M = (2, 3, 4, 5, 6, 8, 10, 13, 17, 23, 30, 40)
FIG2_K = (4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
#: The two figures: the axis that varies with `k`, and the law fitted to the 50% line.
FIGURES = {"fig1": ("n", "k ∝ n²"), "fig2": ("m", "k ∝ m")}


def parse_shard(text: str) -> tuple[int, int]:
    """`i/N` on the command line."""
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


#: Checked when the command line is read (`--seeds 0` is refused there).
_POSITIVE = dict(positive=True)


@dataclasses.dataclass(frozen=True)
class SSVMOptions:
    """Every choice of one P1 reproduction; the defaults are the P1 protocol (Figure 1 grid).

    **Arguments:**

    - `n`: signal sizes of the grid (an int or a sequence; stored as a tuple).
    - `m`: measurement counts of the grid.
    - `k`: widths of the grid.
    - `seeds`: runs per cell (P1: 50).
    - `d`: input size (blank in P1; it does not affect the dynamics).
    - `scaling`: entries of `A`, N(0, 1) for `unit` (P1) or N(0, 1/m) for `1/m`.
    - `step_size`: the gradient-descent step (P1: 1).
    - `tol`: a run succeeds once the loss `½‖A g(u, θ) − y‖²` falls below `tol` (P1: 1e-7).
    - `max_steps`: the step cap (P1: 25 000).
    - `out`: the output folder.
    - `shard`: `(i, N)`, run only the `i`-th of `N` slices of the sweep (0 ≤ i < N), e.g. one
      task of a job array; its folder holds an incomplete sweep and no figure.
    - `merge`: folders written by the shards of this sweep: join them into `out` and draw
      the figure, instead of running.
    - `seed`: base seed of the run keys.
    - `chunk_size`: runs per saved chunk (default: one cell, `seeds` runs, the unit a
      resumed run skips); engineering only, it does not change the results.
    - `bucket_ratio`: passed to `flowdip.sweep` (engineering only): runs that stop leave the
      batch, since the runs of a cell stop anywhere between 30 steps and the cap.
    - `progress`: show the sweep's progress bar.
    """

    # Annotated with what the constructor accepts; stored as tuples, a `Path` and floats.
    n: int | Sequence[int] = dataclasses.field(default=FIG1_N, metadata=_POSITIVE)
    m: int | Sequence[int] = dataclasses.field(default=FIG1_M, metadata=_POSITIVE)
    k: int | Sequence[int] = dataclasses.field(default=FIG1_K, metadata=_POSITIVE)
    seeds: int = dataclasses.field(default=50, metadata=_POSITIVE)
    d: int = 10
    scaling: str = dataclasses.field(default="unit", metadata=dict(choices=("unit", "1/m")))
    step_size: float | int = dataclasses.field(default=1.0, metadata=_POSITIVE)
    tol: float | int = dataclasses.field(default=1e-7, metadata=_POSITIVE)
    max_steps: int = dataclasses.field(default=25_000, metadata=_POSITIVE)
    out: str | os.PathLike = pathlib.Path("results/ssvm-fig1")
    shard: tuple[int, int] = dataclasses.field(
        default=(0, 1),
        metadata=dict(parse=parse_shard, metavar="i/N", default_text="0/1, the whole sweep"),
    )
    merge: Sequence[str | os.PathLike] = dataclasses.field(
        default=(), metadata=dict(nargs="+", metavar="DIR", needs_out=True)
    )
    seed: int = 0
    chunk_size: int | None = None
    bucket_ratio: float | int | None = None
    progress: bool = True

    #: The figure of P1 whose grid these options default to.
    figure: ClassVar[str] = "fig1"

    def __post_init__(self):
        object.__setattr__(self, "out", pathlib.Path(self.out))
        object.__setattr__(self, "merge", tuple(pathlib.Path(p) for p in self.merge))
        object.__setattr__(self, "shard", tuple(self.shard))
        for name in ("n", "m", "k"):
            value = getattr(self, name)
            value = (value,) if isinstance(value, int | np.integer) else tuple(value)
            if not value or any(isinstance(v, bool) or int(v) != v or v < 1 for v in value):
                raise ValueError(f"{name} must be integers >= 1; got {name}={value!r}.")
            object.__setattr__(self, name, tuple(int(v) for v in value))
        for name in ("step_size", "tol"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.bucket_ratio is not None:
            object.__setattr__(self, "bucket_ratio", float(self.bucket_ratio))
            if not self.bucket_ratio >= 1:
                raise ValueError(f"bucket_ratio must be >= 1; got {self.bucket_ratio!r}.")
        if self.scaling not in ("unit", "1/m"):
            raise ValueError(f"scaling must be 'unit' or '1/m'; got {self.scaling!r}.")
        if not (self.step_size > 0 and np.isfinite(self.step_size)):
            raise ValueError(f"step_size must be a positive number; got {self.step_size!r}.")
        if not (self.tol > 0 and np.isfinite(self.tol)):
            raise ValueError(f"tol must be a positive number; got {self.tol!r}.")
        for name in ("max_steps", "seeds", "d") + (("chunk_size",) if self.chunk_size else ()):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {name}={value!r}.")
        i, count = self.shard
        if not (isinstance(i, int) and isinstance(count, int) and 0 <= i < count):
            raise ValueError(f"shard must be (i, N) with integers 0 <= i < N; got {self.shard!r}.")
        if self.merge and count > 1:
            raise ValueError("merge joins the shards' folders: it takes no shard of its own.")
        if missing := [str(p) for p in self.merge if not p.is_dir()]:
            raise ValueError(f"merge: no such folder: {', '.join(missing)}.")

    @property
    def grid(self) -> Grid:
        """The sweep grid."""
        return Grid(n=self.n, m=self.m, k=self.k, seeds=self.seeds, d=self.d)


#: The quick grids: 5 × 5 cells, 4 seeds, 2000 steps, one compiled program.
_QUICK = dict(
    seeds=4,
    max_steps=2000,
    bucket_ratio=1e6,  # one compiled program: compiling dominates a small grid
    chunk_size=512,
)


@dataclasses.dataclass(frozen=True)
class Fig1Options(SSVMOptions):
    """P1 Figure 1: `m = 10`, `n` and `k` vary (the defaults of `SSVMOptions`)."""

    figure: ClassVar[str] = "fig1"

    @classmethod
    def quick(cls, **overrides) -> "Fig1Options":
        """A 5 × 5 grid (n from 5 to 282, k from 16 to 630), 4 seeds, 2000 steps."""
        base = dict(
            n=(5, 14, 38, 103, 282),
            k=(16, 40, 100, 250, 630),
            out=pathlib.Path("results/ssvm-fig1-quick"),
            **_QUICK,
        )
        return cls(**{**base, **overrides})


@dataclasses.dataclass(frozen=True)
class Fig2Options(SSVMOptions):
    """P1 Figure 2: `n = 40`, `m` and `k` vary."""

    n: int | Sequence[int] = dataclasses.field(default=FIG2_N, metadata=_POSITIVE)
    m: int | Sequence[int] = dataclasses.field(default=FIG2_M, metadata=_POSITIVE)
    k: int | Sequence[int] = dataclasses.field(default=FIG2_K, metadata=_POSITIVE)
    out: str | os.PathLike = pathlib.Path("results/ssvm-fig2")

    figure: ClassVar[str] = "fig2"

    @classmethod
    def quick(cls, **overrides) -> "Fig2Options":
        """A 5 × 5 grid (m from 2 to 40, k from 4 to 1024), 4 seeds, 2000 steps."""
        base = dict(
            m=(2, 5, 10, 20, 40),
            k=(4, 16, 64, 256, 1024),
            out=pathlib.Path("results/ssvm-fig2-quick"),
            **_QUICK,
        )
        return cls(**{**base, **overrides})


#: The options class of each figure.
OPTIONS = {"fig1": Fig1Options, "fig2": Fig2Options}
