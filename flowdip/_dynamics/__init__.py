"""Dynamics: the interface (base), flows, discrete dynamics, Optimistix and Optax baselines."""

from .base import (
    AbstractDiscreteDynamics as AbstractDiscreteDynamics,
    AbstractDynamics as AbstractDynamics,
    AbstractFlow as AbstractFlow,
    AbstractStopRule as AbstractStopRule,
    as_step_size as as_step_size,
    check_positive_scalar as check_positive_scalar,
    check_tolerances as check_tolerances,
    LossBelow as LossBelow,
    LossBelowOrUnreachable as LossBelowOrUnreachable,
)
from .baselines import OptimistixBaseline as OptimistixBaseline
from .descents import GradientDescent as GradientDescent, InertialDescent as InertialDescent
from .flows import (
    GradientFlow as GradientFlow,
    InertialFlow as InertialFlow,
    ModifiedFlow as ModifiedFlow,
)
from .optax import OptaxBaseline as OptaxBaseline
