"""Dynamics on the one vector field `−∇F`: the gradient flow (Diffrax) and gradient descent
(its explicit-Euler discretisation), plus stop rules."""

import abc
import math

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp

from ._objective import Objective
from ._typing import Array, Float, is_concrete, PyTree


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


class LossBelow(AbstractStopRule):
    """Stop once `F(θ) < tol`: a descent at the first such step, a flow at the crossing time."""

    tol: float = eqx.field(static=True, converter=float)

    def __check_init__(self):
        if not (math.isfinite(self.tol) and self.tol > 0):
            raise ValueError(f"LossBelow needs a tolerance tol > 0; got tol={self.tol}.")

    def residual(self, loss: Float[Array, ""]) -> Float[Array, ""]:
        """`loss − tol`."""
        return loss - self.tol


# -- dynamics -----------------------------------------------------------------------------------
class AbstractDynamics(eqx.Module):
    """A way of moving the parameters along `−∇F`. Flows ([`flowdip.AbstractFlow`][]) are
    integrated by Diffrax; discrete dynamics ([`flowdip.AbstractDiscreteDynamics`][]) iterate an
    update in a `lax.while_loop`. Both go through [`flowdip.solve`][]."""


class AbstractFlow(AbstractDynamics):
    """A continuous-time dynamics `y' = f(t, y)` integrated by Diffrax.

    Subclasses give `vector_field(objective)`; `initial_state`/`parameters` map between the
    objective's state `θ` and the ODE state `y` (the identity by default; an inertial flow
    would add a velocity).
    """

    solver: dfx.AbstractSolver
    rtol: float
    atol: float
    max_steps: int

    @abc.abstractmethod
    def vector_field(self, objective: Objective):
        """A Diffrax vector field `(t, y, args) -> y'`."""

    def initial_state(self, objective: Objective, theta0: PyTree) -> PyTree:
        """ODE state at `t = 0` for parameters `θ₀`."""
        del objective
        return theta0

    def parameters(self, y: PyTree) -> PyTree:
        """Parameters `θ` inside an ODE state."""
        return y

    def controller(self) -> dfx.AbstractStepSizeController:
        """The step-size controller: a PID controller at (`rtol`, `atol`)."""
        return dfx.PIDController(rtol=self.rtol, atol=self.atol)


def _check_tolerances(rtol, atol, max_steps):
    for name, value in (("rtol", rtol), ("atol", atol)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0; got {name}={value}.")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be an integer >= 1; got max_steps={max_steps!r}.")


class GradientFlow(AbstractFlow):
    """The gradient flow `θ' = −∇F(θ)`, integrated by Diffrax.

    **Arguments:**

    - `solver`: a Diffrax solver (default `diffrax.Tsit5()`).
    - `rtol`, `atol`: tolerances of the PID step-size controller.
    - `max_steps`: the solver's step budget.

    [`flowdip.GradientFlow.reference`][] gives a tight float64 reference (Dopri8 at 1e-12).
    """

    solver: dfx.AbstractSolver = dfx.Tsit5()
    rtol: float = eqx.field(static=True, converter=float, default=1e-8)
    atol: float = eqx.field(static=True, converter=float, default=1e-10)
    max_steps: int = eqx.field(static=True, default=100_000)

    def __check_init__(self):
        _check_tolerances(self.rtol, self.atol, self.max_steps)

    @classmethod
    def reference(cls, *, rtol: float = 1e-12, atol: float = 1e-14, max_steps: int = 1_000_000):
        """A float64 reference flow: Dopri8 with tight tolerances.

        [`flowdip.solve`][] refuses to run it on a float32 objective.
        """
        return cls(solver=dfx.Dopri8(), rtol=rtol, atol=atol, max_steps=max_steps)

    @property
    def needs_float64(self) -> bool:
        """Tolerances below float32 resolution need float64 states."""
        return self.rtol < 1e-6

    def vector_field(self, objective: Objective):
        """`−∇F`, read from the objective."""
        return objective.vector_field


class AbstractDiscreteDynamics(AbstractDynamics):
    """An iteration `state_{τ+1} = step(state_τ)` with step size `η`; `τ` steps take time `τη`.

    `step` returns the loss at the current parameters with the new state, so that the loss
    costs nothing extra.
    """

    step_size: Float[Array, ""]

    def initial_state(self, objective: Objective, theta0: PyTree) -> PyTree:
        """Iteration state for parameters `θ₀`."""
        del objective
        return theta0

    def parameters(self, state: PyTree) -> PyTree:
        """Parameters `θ` inside an iteration state."""
        return state

    @abc.abstractmethod
    def step(self, objective: Objective, state: PyTree) -> tuple[Float[Array, ""], PyTree]:
        """`(F(θ_τ), state_{τ+1})`."""


def _as_step_size(x) -> Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x


class GradientDescent(AbstractDiscreteDynamics):
    """Gradient descent `θ_{τ+1} = θ_τ − η ∇F(θ_τ)`: explicit Euler on the gradient flow's
    field with step `η`.

    **Arguments:**

    - `step_size`: `η > 0` (an array, so that changing it does not recompile).
    """

    step_size: Float[Array, ""] = eqx.field(converter=_as_step_size)

    def __check_init__(self):
        if self.step_size.shape != ():
            raise ValueError(f"step_size must be a scalar; got shape {self.step_size.shape}.")
        if is_concrete(self.step_size):
            eta = float(self.step_size)
            if not (math.isfinite(eta) and eta > 0):
                raise ValueError(f"step_size must be a finite number > 0; got {eta}.")

    def step(self, objective: Objective, state: PyTree) -> tuple[Float[Array, ""], PyTree]:
        """One explicit-Euler step of `−∇F`."""
        value, grad = objective.value_and_gradient(state)
        eta = self.step_size
        new = jax.tree_util.tree_map(lambda s, g: s - eta.astype(g.dtype) * g, state, grad)
        return value, new
