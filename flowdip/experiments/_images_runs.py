"""The batched runs of `flowdip reproduce images`: one compiled program per kind of run
(curvature, a discrete dynamics, the flow), vmapped over the runs of one operator."""

import time

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np
from jax.flatten_util import ravel_pytree

from .._analysis.sharpness import sharpness
from .._dynamics import AbstractDiscreteDynamics, GradientFlow
from .._objective import Objective
from .._problem.operators import AbstractImagingOperator, CompressedSensing
from .._problem.problem import InverseProblem
from .._solve import solve_descent, solve_flow
from .._sweep import result_codes


#: Up to this many pixels the operators run as dense n × n matrices (see `runtime_operator`).
DENSE_UP_TO = 32 * 32


def runtime_operator(operator: AbstractImagingOperator, ys):
    """The operator and observations the compiled programs take.

    Small images: both operators as dense `n × n` matrices, so that every compiled program
    (Lanczos, descent, Adam, flow) is shared between them: the operator is a runtime
    argument of one program rather than part of its structure, and compiling dominates at
    that size. Compressed sensing (`m < n` rows) is padded with zero rows, and its observation
    with zeros: they add nothing to `½‖A x − y‖²`, so the loss, gradients and Hessian are
    exactly those of the `m × n` operator. Larger images: the operators themselves (an `n × n`
    product at 64 × 64 costs more than the ConvDIP's step; the FFT blur costs almost nothing),
    one set of programs per operator.
    """
    n = operator.num_pixels
    if n > DENSE_UP_TO:
        return operator, ys
    A = operator.as_matrix()
    pad = jnp.zeros((n - A.shape[0], n), A.dtype)
    ys = jnp.concatenate([ys, jnp.zeros((ys.shape[0], n - ys.shape[1]), ys.dtype)], 1)
    return lx.MatrixLinearOperator(jnp.concatenate([A, pad])), ys


def _objectives(operator, generator, xs, ys):
    return eqx.filter_vmap(lambda x, y: Objective(InverseProblem(operator, x, y=y), generator))(
        xs, ys
    )


@eqx.filter_jit
def batched_curvature(operator, generator, xs, ys, keys):
    """The largest `L̂` over the runs of one operator (one step size for all of them):
    `λ_max(∇²F(θ₀))`, which bounds the stable step size of descent (`η < 2/λ_max`), by
    Lanczos; `keys` draw the start vectors."""

    # Not by power iteration: the ConvDIP's Hessian at θ₀ has a negative eigenvalue almost as
    # large as λ_max (−3661 against 3681 on the quick camera problem), so power iteration
    # oscillates between the two and 30 of its steps returned 394, a step size nine times too
    # large.
    def top(objective, key):
        theta0 = objective.initial_state()
        flat = ravel_pytree(theta0)[0]
        init = jr.normal(key, flat.shape, flat.dtype)
        return sharpness(objective, theta0, num_iters=40, init=init).value

    objectives = _objectives(operator, generator, xs, ys)
    return jnp.max(eqx.filter_vmap(top)(objectives, keys))


@eqx.filter_jit
def batched_discrete(
    operator, generator, xs, ys, dynamics: AbstractDiscreteDynamics, save_steps, horizon, unroll=1
):
    """`solve()`'s path of a discrete dynamics (descent, Adam) with traced step size and save
    steps: one program for every operator and step size of the same shapes.

    No unrolling for the ConvDIP, whose step dwarfs the loop's own cost: unrolling would only
    multiply the compile time. Adam's first steps move every weight by about its learning
    rate at once, and the loss can jump by orders of magnitude before it falls: that is not
    a divergence here, so the divergence guard is set out of reach.
    """

    def one(objective):
        return solve_descent(
            objective,
            dynamics,
            save_steps=save_steps,
            horizon=horizon,
            save_signal=True,
            unroll=unroll,
            diverge_factor=1e30,
            param_factor=1e30,
        )

    return eqx.filter_vmap(one)(_objectives(operator, generator, xs, ys))


@eqx.filter_jit
def batched_flow(operator, generator, xs, ys, flow: GradientFlow, ts, t1):
    """The gradient flow of every run of one operator, saved at `ts`, to `t1`."""

    def one(objective):
        return solve_flow(objective, flow, ts=ts, t1=t1, save_signal=True)

    return eqx.filter_vmap(one)(_objectives(operator, generator, xs, ys))


def save_steps(steps: int, num_saves: int) -> np.ndarray:
    """Save steps from 0 to `steps`, geometrically spaced after step 1 (at most `num_saves`
    of them): the curves are drawn against a logarithmic step axis, where both the first fit
    and a late turn of the error show."""
    grid = np.geomspace(1, steps, max(1, num_saves - 1))
    return np.unique(np.concatenate([[0], np.round(grid)])).astype(np.int32)


class Clock:
    """Logs the time since the last call."""

    def __init__(self, log):
        self.log, self.start = log, time.perf_counter()

    def done(self):
        """Logs the time since the clock started or last logged."""
        now = time.perf_counter()
        self.log(f"        ({now - self.start:.1f} s)")
        self.start = now


def result_names(result) -> list[str]:
    """The names of a batch of result codes."""
    names = {code: name for name, code in result_codes().items()}
    return [names[int(c)] for c in np.atleast_1d(np.asarray(result._value))]


def observation_image(operator, y, size):
    """What a reader would look at: the blurred image itself, or `Aᵀy` for compressed
    sensing."""
    if operator.num_measurements == size * size and not isinstance(operator, CompressedSensing):
        return np.asarray(y).reshape(size, size)
    return np.asarray(operator.adjoint(y))
