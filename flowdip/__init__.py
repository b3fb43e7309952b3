"""flowdip: gradient flow versus gradient descent for Deep Inverse Prior networks, in JAX."""

import importlib.metadata

from ._analysis.compare import (
    compare as compare,
    Comparison as Comparison,
    convergence_order as convergence_order,
    ConvergenceOrder as ConvergenceOrder,
)
from ._analysis.fits import (
    fit_power_law as fit_power_law,
    fit_rate as fit_rate,
    fit_transition as fit_transition,
    loglog_slope as loglog_slope,
    PowerLawFit as PowerLawFit,
    transition_widths as transition_widths,
)
from ._analysis.phase import disagreement as disagreement
from ._analysis.reachability import (
    Reachability as Reachability,
    reachability as reachability,
    reachability_batch as reachability_batch,
)
from ._analysis.sharpness import (
    gauss_newton_sharpness as gauss_newton_sharpness,
    hessian_vector_product as hessian_vector_product,
    normalised_sharpness as normalised_sharpness,
    Sharpness as Sharpness,
    sharpness as sharpness,
    sharpness_along as sharpness_along,
)
from ._dynamics import (
    AbstractDiscreteDynamics as AbstractDiscreteDynamics,
    AbstractDynamics as AbstractDynamics,
    AbstractFlow as AbstractFlow,
    AbstractStopRule as AbstractStopRule,
    GradientDescent as GradientDescent,
    GradientFlow as GradientFlow,
    InertialDescent as InertialDescent,
    InertialFlow as InertialFlow,
    LossBelow as LossBelow,
    LossBelowOrUnreachable as LossBelowOrUnreachable,
    ModifiedFlow as ModifiedFlow,
    OptaxBaseline as OptaxBaseline,
    OptimistixBaseline as OptimistixBaseline,
)
from ._generator.activations import (
    AbstractActivation as AbstractActivation,
    Sigmoid as Sigmoid,
    Softplus as Softplus,
    Tanh as Tanh,
)
from ._generator.convdip import ConvDIP as ConvDIP
from ._generator.networks import (
    AbstractGenerator as AbstractGenerator,
    MLP as MLP,
    sample_V as sample_V,
    sample_W as sample_W,
    TwoLayerDIP as TwoLayerDIP,
    uniform_on_sphere as uniform_on_sphere,
)
from ._linalg import state_from_coordinates as state_from_coordinates
from ._losses import (
    AbstractLoss as AbstractLoss,
    Huber as Huber,
    MSE as MSE,
    PowerLoss as PowerLoss,
    PseudoHuber as PseudoHuber,
)
from ._metrics import (
    image_metrics as image_metrics,
    psnr as psnr,
    relative_error as relative_error,
    ssim as ssim,
)
from ._objective import FieldJacobian as FieldJacobian, Objective as Objective
from ._problem.blur import Blur as Blur
from ._problem.imaging import AbstractImagingOperator as AbstractImagingOperator
from ._problem.operators import (
    CompressedSensing as CompressedSensing,
    Denoising as Denoising,
    Inpainting as Inpainting,
    relative_noise_std as relative_noise_std,
)
from ._problem.problem import InverseProblem as InverseProblem
from ._solve import (
    RESULTS as RESULTS,
    solve as solve,
    SolveError as SolveError,
    Trajectory as Trajectory,
)
from ._sweep import (
    DeviceExecutor as DeviceExecutor,
    Grid as Grid,
    Instance as Instance,
    load_dataset as load_dataset,
    merge_sweeps as merge_sweeps,
    plan_chunks as plan_chunks,
    result_codes as result_codes,
    run_cell as run_cell,
    run_key as run_key,
    save_dataset as save_dataset,
    sweep as sweep,
    sweep_reachability as sweep_reachability,
    SweepFolderError as SweepFolderError,
    SweepTaskError as SweepTaskError,
    use_executor as use_executor,
)
from ._theory.certificate import certify as certify
from ._theory.overparam import (
    certified_width_curves as certified_width_curves,
    certified_widths as certified_widths,
)
from ._theory.recovery import (
    project_onto_reachable as project_onto_reachable,
    Recovery as Recovery,
    recovery as recovery,
)
from ._theory.results import (
    Certificate as Certificate,
    PathCertificate as PathCertificate,
    TheoryConstants as TheoryConstants,
)


__version__ = importlib.metadata.version("flowdip")
