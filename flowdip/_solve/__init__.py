"""Solving: the typed result (`Trajectory`, `RESULTS`), the traced loops that jit/vmap/segment
callers use, and `solve` (validation, then the traced loop)."""

from .flow import (
    flow_result as flow_result,
    flow_run_to as flow_run_to,
    flow_start as flow_start,
    FlowState as FlowState,
)
from .loop import (
    descent_result as descent_result,
    descent_run_to as descent_run_to,
    descent_start as descent_start,
    DescentStart as DescentStart,
    DescentState as DescentState,
    DIVERGE_FACTOR as DIVERGE_FACTOR,
    PARAM_FACTOR as PARAM_FACTOR,
    solve_descent as solve_descent,
    solve_flow as solve_flow,
    Thresholds as Thresholds,
)
from .segments import (
    can_segment as can_segment,
    horizon_array as horizon_array,
    Outcome as Outcome,
    run_outcome as run_outcome,
    run_segment as run_segment,
    segment_length as segment_length,
    Segmented as Segmented,
    start_run as start_run,
)
from .solve import (
    horizon_of as horizon_of,
    solve as solve,
    solve_to as solve_to,
    SolveError as SolveError,
)
from .trajectory import RESULTS as RESULTS, Trajectory as Trajectory
