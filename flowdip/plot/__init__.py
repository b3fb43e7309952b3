"""Matplotlib figures and text reports of results: data in, figures (or text) out.

Plots are functions of results, never of live runs.
"""

from .plots import (
    AXIS_LABELS as AXIS_LABELS,
    cell_edges as cell_edges,
    certificate as certificate,
    gap_over_time as gap_over_time,
    gap_vs_step_size as gap_vs_step_size,
    label_of as label_of,
    loss_curves as loss_curves,
    phase_diagram as phase_diagram,
    positive as positive,
    recovery as recovery,
    trajectories as trajectories,
)
from .report import certificate_table as certificate_table
