"""flowdip: gradient flow versus gradient descent for Deep Inverse Prior networks, in JAX."""

import importlib.metadata

from ._activations import (
    AbstractActivation as AbstractActivation,
    Sigmoid as Sigmoid,
    Softplus as Softplus,
    Tanh as Tanh,
)
from ._dynamics import (
    AbstractDiscreteDynamics as AbstractDiscreteDynamics,
    AbstractDynamics as AbstractDynamics,
    AbstractFlow as AbstractFlow,
    AbstractStopRule as AbstractStopRule,
    GradientDescent as GradientDescent,
    GradientFlow as GradientFlow,
    LossBelow as LossBelow,
)
from ._losses import (
    AbstractLoss as AbstractLoss,
    Huber as Huber,
    MSE as MSE,
    PowerLoss as PowerLoss,
    PseudoHuber as PseudoHuber,
)
from ._networks import (
    AbstractGenerator as AbstractGenerator,
    MLP as MLP,
    sample_V as sample_V,
    sample_W as sample_W,
    TwoLayerDIP as TwoLayerDIP,
    uniform_on_sphere as uniform_on_sphere,
)
from ._objective import Objective as Objective
from ._problem import InverseProblem as InverseProblem
from ._solve import solve as solve, SolveError as SolveError
from ._trajectory import RESULTS as RESULTS, Trajectory as Trajectory


__version__ = importlib.metadata.version("flowdip")
from ._compare import (
    compare as compare,
    Comparison as Comparison,
    convergence_order as convergence_order,
    ConvergenceOrder as ConvergenceOrder,
    fit_rate as fit_rate,
    loglog_slope as loglog_slope,
)
from ._sweep import (
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
)


# Images: a convolutional DIP, imaging operators and image metrics.
# isort: off
from ._convdip import ConvDIP as ConvDIP
from ._metrics import (
    image_metrics as image_metrics,
    psnr as psnr,
    relative_error as relative_error,
    ssim as ssim,
)
from ._operators import (
    AbstractImagingOperator as AbstractImagingOperator,
    Blur as Blur,
    CompressedSensing as CompressedSensing,
    Denoising as Denoising,
    Inpainting as Inpainting,
    relative_noise_std as relative_noise_std,
)
# isort: on
