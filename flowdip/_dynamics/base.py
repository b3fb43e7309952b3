"""The dynamics interface: what every way of moving the parameters along `−∇F` says about
itself, so that callers ask the object rather than test its type; and stop rules."""

import abc
import math

import diffrax as dfx
import equinox as eqx
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from .._objective import Objective
from .._typing import Array, check_int, check_real, Float, is_concrete, PyTree


# -- stop rules ---------------------------------------------------------------------------------
class AbstractStopRule(eqx.Module):
    """Ends a run early. `residual(loss)` is real-valued and becomes negative when the rule is
    met, so that a flow can locate the crossing time with a root finder."""

    @abc.abstractmethod
    def residual(self, loss: Float[Array, ""]) -> Float[Array, ""]:
        """Real-valued condition, `< 0` once the rule is met."""

    def met(self, loss: Float[Array, ""]) -> Array:
        """Whether the rule is met at this loss."""
        return self.residual(loss) < 0

    def unreachable(self) -> Array:
        """Whether the rule is certified never to be met (the run then ends at once with
        result `unreachable`); `False` unless the rule carries such a certificate."""
        return jnp.array(False)


class LossBelow(AbstractStopRule):
    """Stop once `F(θ) < tol`: a descent at the first such step, a flow at the crossing time."""

    tol: float = eqx.field(static=True, converter=lambda tol: check_real("tol", tol))

    def __check_init__(self):
        if not (math.isfinite(self.tol) and self.tol > 0):
            raise ValueError(f"LossBelow needs a tolerance tol > 0; got tol={self.tol}.")

    def residual(self, loss: Float[Array, ""]) -> Float[Array, ""]:
        """`loss − tol`."""
        return loss - self.tol


class LossBelowOrUnreachable(AbstractStopRule):
    """`LossBelow(tol)` with a certified lower bound on the loss along any run: where
    `loss_bound ≥ tol` the rule can never be met, and the run ends at once with result
    `unreachable` instead of running to its horizon.

    The bound is the reachability certificate of the objective
    ([`flowdip.Reachability`][]`.loss_bound`, e.g.
    `fd.reachability(objective).stop_rule(tol)`); it is an array, so runs with different
    bounds share one compiled program.
    """

    tol: float = eqx.field(static=True, converter=lambda tol: check_real("tol", tol))
    loss_bound: Float[Array, ""] = eqx.field(converter=jnp.asarray)

    def __check_init__(self):
        if not (math.isfinite(self.tol) and self.tol > 0):
            raise ValueError(f"LossBelowOrUnreachable needs tol > 0; got tol={self.tol}.")
        if self.loss_bound.shape != ():
            raise ValueError(f"loss_bound must be a scalar; got shape {self.loss_bound.shape}.")

    def residual(self, loss: Float[Array, ""]) -> Float[Array, ""]:
        """`loss − tol`."""
        return loss - self.tol

    def unreachable(self) -> Array:
        """`loss_bound ≥ tol` (a NaN bound certifies nothing)."""
        return self.loss_bound >= self.tol


# -- validation shared by the dynamics ----------------------------------------------------------
def as_step_size(x, name: str = "step_size") -> Array:
    """A scalar hyperparameter as a floating array (so that changing it does not recompile).

    Raises `TypeError` for what is not a real number (`True` is not a step of 1, and a complex
    step would lose its imaginary part)."""
    if isinstance(x, bool | np.bool_ | str | bytes | complex) or x is None:
        raise TypeError(f"{name} must be a real number; got {name}={x!r}.")
    try:
        x = jnp.asarray(x)
    except TypeError:
        raise TypeError(f"{name} must be a real number; got {name}={x!r}.") from None
    if x.dtype == jnp.bool_ or jnp.issubdtype(x.dtype, jnp.complexfloating):
        raise TypeError(f"{name} must be a real number; got {name} of dtype {x.dtype}.")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    # Never weakly typed: `GradientDescent(0.1)` and a step size set with an explicit dtype
    # (as `convergence_order` does) must give the same abstract value, or `solve` compiles
    # twice for the same run.
    return jnp.asarray(x, dtype=x.dtype)


def check_positive_scalar(name: str, x: Array, *, allow_zero: bool = False) -> None:
    """Raises unless `x` is a scalar, finite and `> 0` (`>= 0` with `allow_zero`)."""
    if x.shape != ():
        raise ValueError(f"{name} must be a scalar; got shape {x.shape}.")
    if is_concrete(x):
        value = float(x)
        ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
        if not ok:
            bound = ">= 0" if allow_zero else "> 0"
            raise ValueError(f"{name} must be a finite number {bound}; got {name}={value}.")


def check_tolerances(rtol: float, atol: float, max_steps: int) -> None:
    """Raises unless `rtol`, `atol` are finite and positive and `max_steps` an integer >= 1."""
    for name, value in (("rtol", rtol), ("atol", atol)):
        if not (math.isfinite(check_real(name, value)) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0; got {name}={value}.")
    check_int("max_steps", max_steps)


# -- the interface ------------------------------------------------------------------------------
class AbstractDynamics(eqx.Module):
    """A way of moving the parameters along `−∇F`.

    Every dynamics answers the questions its callers would otherwise ask by type:

    - `step_size`: the step `η` it discretises or models, or `None` if it has none.
    - `time_per_step`: the time one of its steps covers (`η` for a discrete dynamics), or
      `None` for a flow, whose steps are chosen by its solver.
    - `needs_float64`: whether it must run on a float64 objective.
    - `label()`: a short name for legends and messages.
    - `with_step_size(η)`: the same dynamics at another step (itself if it has none).

    How a run starts, steps or integrates, and is segmented and resumed is the job of the
    two kinds below ([`flowdip.AbstractFlow`][], integrated by Diffrax, and
    [`flowdip.AbstractDiscreteDynamics`][], iterated in a loop); [`flowdip.solve`][] and the
    sweep engine drive them. A new dynamics is one final class of one of the two kinds.
    """

    step_size: eqx.AbstractVar[Float[Array, ""] | None]

    @property
    @abc.abstractmethod
    def time_per_step(self) -> Float[Array, ""] | None:
        """The time one step covers, or `None` for an adaptive flow."""

    @property
    @abc.abstractmethod
    def needs_float64(self) -> bool:
        """Whether the dynamics must run on a float64 objective."""

    @abc.abstractmethod
    def label(self) -> str:
        """A short human-readable name (`gradient flow`, `GD η=1`, …)."""

    @abc.abstractmethod
    def initial_state(self, objective: Objective, theta0: PyTree) -> PyTree:
        """The state (ODE state or iteration state) at the start, for parameters `θ₀`."""

    @abc.abstractmethod
    def parameters(self, state: PyTree) -> PyTree:
        """The parameters `θ` inside a state."""

    def with_step_size(self, step_size) -> "AbstractDynamics":
        """This dynamics with step `η = step_size`; unchanged if it has no step size."""
        if self.step_size is None:
            return self
        return eqx.tree_at(
            lambda d: d.step_size, self, jnp.asarray(step_size, self.step_size.dtype)
        )


class AbstractFlow(AbstractDynamics):
    """A continuous-time dynamics `y' = f(t, y)` integrated by Diffrax under a PID controller.

    Final subclasses give `vector_field(objective)`, `initial_state`/`parameters` (the map
    between the objective's `θ` and the ODE state `y`), and the fields `solver`, `rtol`,
    `atol`, `max_steps` and `norm` (`"rms"`, Diffrax's default, or `"max"`: the max norm
    makes a padded, masked run take the steps of the unpadded run, since the RMS norm is
    diluted by the padded zeros).
    """

    solver: eqx.AbstractVar[dfx.AbstractSolver]
    rtol: eqx.AbstractVar[float]
    atol: eqx.AbstractVar[float]
    max_steps: eqx.AbstractVar[int]
    norm: eqx.AbstractVar[str]

    @abc.abstractmethod
    def vector_field(self, objective: Objective):
        """A Diffrax vector field `(t, y, args) -> y'`."""

    def solver_for(self, objective: Objective) -> dfx.AbstractSolver:
        """The Diffrax solver that integrates this flow on `objective`: `solver` itself,
        unless the flow binds its solver to the objective (an implicit solver whose linear
        solves use the structure of the objective's Jacobian)."""
        del objective
        return self.solver

    @property
    def time_per_step(self) -> None:
        """`None`: the solver chooses the steps."""
        return None

    @property
    def needs_float64(self) -> bool:
        """Tolerances below float32 resolution need float64 states."""
        return self.rtol < 1e-6

    def controller(self) -> dfx.AbstractStepSizeController:
        """The step-size controller: a PID controller at (`rtol`, `atol`) in `norm`."""
        if self.norm == "max":
            return dfx.PIDController(rtol=self.rtol, atol=self.atol, norm=optx.max_norm)
        return dfx.PIDController(rtol=self.rtol, atol=self.atol)


NORMS = ("rms", "max")


def check_flow_fields(rtol: float, atol: float, max_steps: int, norm: str) -> None:
    """The checks every flow's `__check_init__` makes on its solver settings."""
    check_tolerances(rtol, atol, max_steps)
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}; got norm={norm!r}.")


class AbstractDiscreteDynamics(AbstractDynamics):
    """An iteration `state_{τ+1} = step(state_τ)` with step size `η`; `τ` steps take time `τη`.

    `step` returns the loss at the current parameters with the new state, so that the loss
    costs nothing extra. `unroll` steps are traced per iteration of the stepping loop: several
    amortise the loop's own cost when a step is cheap; a costly step (a solver iteration)
    takes one, since each copy adds to the compile time.
    """

    unroll: eqx.AbstractClassVar[int]
    short_name: eqx.AbstractClassVar[str]
    step_size: eqx.AbstractVar[Float[Array, ""]]

    @abc.abstractmethod
    def step(self, objective: Objective, state: PyTree) -> tuple[Float[Array, ""], PyTree]:
        """`(F(θ_τ), state_{τ+1})`."""

    @property
    def time_per_step(self) -> Float[Array, ""]:
        """`η`: `τ` steps take time `τη`."""
        return self.step_size

    @property
    def needs_float64(self) -> bool:
        """`False`: a fixed-step iteration runs in any precision."""
        return False

    def label(self) -> str:
        """`<short name> η=<step size>`."""
        if is_concrete(self.step_size):
            return f"{self.short_name} η={float(self.step_size):g}"
        return self.short_name
