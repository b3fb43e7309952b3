"""Sweeps: every run of a grid, batched, on disk, resumable.

`protocol` (grid, instance, run keys), `plan` (chunks), `record` (what a run records),
`engine` (executing one chunk), `executor` (where chunks run), `store` (config, folder,
dataset), `sweep` (the orchestrator).
"""

from .engine import run_cell as run_cell
from .executor import (
    DeviceExecutor as DeviceExecutor,
    SweepTaskError as SweepTaskError,
    use_executor as use_executor,
)
from .folder import SweepFolderError as SweepFolderError
from .plan import Chunk as Chunk, plan_chunks as plan_chunks
from .protocol import Grid as Grid, Instance as Instance, run_key as run_key, run_keys as run_keys
from .store import (
    load_dataset as load_dataset,
    merge_sweeps as merge_sweeps,
    result_codes as result_codes,
    reusable_sweep as reusable_sweep,
    save_dataset as save_dataset,
)
from .sweep import sweep as sweep, sweep_reachability as sweep_reachability
