"""The plan of a sweep: its deterministic list of chunks, each a batch of runs padded to one
bucket's sizes (one compiled program per bucket)."""

import dataclasses
import math

from .._typing import check_int, check_real
from .protocol import Grid


def _groups(values: tuple[int, ...], ratio: float) -> list[tuple[int, ...]]:
    groups: list[list[int]] = []
    for v in values:
        if groups and v <= ratio * groups[-1][0]:
            groups[-1].append(v)
        else:
            groups.append([v])
    return [tuple(g) for g in groups]


@dataclasses.dataclass(frozen=True)
class Chunk:
    """One batch of runs of a sweep, executed as one compiled call and stored as one file.

    **Arguments:** `index` (its place in the plan), `n_pad`, `m_pad`, `k_pad` (the sizes its
    runs are padded to), `runs` (the `(n, m, k, seed)` of each run, in order).
    """

    index: int
    n_pad: int
    m_pad: int
    k_pad: int
    runs: tuple[tuple[int, int, int, int], ...]  # (n, m, k, seed)

    @property
    def name(self) -> str:
        """The chunk's file name in a sweep folder."""
        return f"chunk_{self.index:05d}.npz"


def check_plan(grid, chunk_size, bucket_ratio, pad_to) -> None:
    """The checks of `plan_chunks`' arguments (which `sweep` also takes)."""
    if not isinstance(grid, Grid):
        raise TypeError(f"grid must be a flowdip.Grid; got grid={grid!r}.")
    check_int("chunk_size", chunk_size)
    ratio = check_real("bucket_ratio", bucket_ratio)
    if not (math.isfinite(ratio) and ratio >= 1):
        raise ValueError(f"bucket_ratio must be a finite number >= 1; got bucket_ratio={ratio}.")
    if pad_to is not None:
        if isinstance(pad_to, str) or len(pad_to) != 3:
            raise ValueError(f"pad_to must be three sizes (n, m, k) >= 1; got pad_to={pad_to!r}.")
        for name, v in zip(("n", "m", "k"), pad_to):
            check_int(f"pad_to[{name}]", v)


def plan_chunks(
    grid: Grid,
    *,
    chunk_size: int,
    bucket_ratio: float = 4.0,
    pad_to: tuple[int, int, int] | None = None,
) -> list[Chunk]:
    """The sweep's deterministic list of chunks (what `--shard i/N` splits).

    A bucket is one compiled program: `n`, `m` and `k` are padded to the largest of groups of
    grid values that lie within a factor `bucket_ratio` of the group's smallest. (`n` matters
    too although the reduced step is `O(mk)`: drawing `V`, forming `B = AV/√k` and the Gram
    matrix of `σ_min(J(θ₀))` cost `O(nk)` to `O(n²k)` per run, more than the steps of a run
    that converges quickly.) Within a bucket the runs go in the order `(n, m, k, seed)`, so a
    chunk of `seeds` runs is one cell. `pad_to = (n, m, k)` pads every bucket to at least these
    sizes (sweeps padded alike, with chunks of one length, share one compiled program).
    """
    check_plan(grid, chunk_size, bucket_ratio, pad_to)
    lo_n, lo_m, lo_k = (0, 0, 0) if pad_to is None else (int(v) for v in pad_to)
    chunks = []
    for ns in _groups(grid.n, bucket_ratio):
        for ms in _groups(grid.m, bucket_ratio):
            for ks in _groups(grid.k, bucket_ratio):
                n_pad, m_pad, k_pad = max(*ns, lo_n), max(*ms, lo_m), max(*ks, lo_k)
                # Memory per run is dominated by V (n×k), W (k×d), B (m×k) and A (m×n).
                per_run = 8 * (k_pad * (n_pad + m_pad + grid.d + 8) + m_pad * n_pad)
                size = max(1, min(chunk_size, (256 * 2**20) // per_run))
                runs = [(n, m, k, s) for n in ns for m in ms for k in ks for s in range(grid.seeds)]
                for start in range(0, len(runs), size):
                    chunk = Chunk(
                        len(chunks), n_pad, m_pad, k_pad, tuple(runs[start : start + size])
                    )
                    chunks.append(chunk)
    return chunks
