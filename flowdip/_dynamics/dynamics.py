"""Dynamics on the one vector field `−∇F`: the gradient flow (Diffrax) and gradient descent
(its explicit-Euler discretisation), plus stop rules."""

import abc
import math
from typing import ClassVar

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp

from .._objective import Objective
from .._typing import Array, Float, is_concrete, PyTree


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
    costs nothing extra. `unroll` steps are traced per iteration of the stepping loop: several
    amortise the loop's own cost when a step is cheap; a costly step (a solver iteration)
    takes one, since each copy adds to the compile time.
    """

    unroll: ClassVar[int] = 4
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
    # Never weakly typed: `GradientDescent(0.1)` and a step size set with an explicit dtype
    # (as `convergence_order` does) must give the same abstract value, or `solve` compiles
    # twice for the same run.
    return jnp.asarray(x, dtype=x.dtype)


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


# -- beyond the papers: the modified flow and inertial dynamics (issue 5) ------------------------
def _positive_scalar(name: str, x: Array, *, allow_zero: bool = False) -> None:
    if x.shape != ():
        raise ValueError(f"{name} must be a scalar; got shape {x.shape}.")
    if is_concrete(x):
        value = float(x)
        ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
        if not ok:
            bound = ">= 0" if allow_zero else "> 0"
            raise ValueError(f"{name} must be a finite number {bound}; got {name}={value}.")


class ModifiedFlow(AbstractFlow):
    r"""The modified (backward-error) flow of gradient descent with step `η`:

    $$\theta' = -\nabla\big(F + \tfrac{\eta}{4}\|\nabla F\|^2\big)
      = -\big(\nabla F + \tfrac{\eta}{2}\nabla^2 F\,\nabla F\big),$$

    the flow that gradient descent follows to `O(η²)` over a fixed time (implicit gradient
    regularisation), where it follows the gradient flow only to `O(η)`. The Hessian enters
    through one Hessian-vector product per evaluation (`jax.linearize` of the objective's
    gradient), so the cost is about twice the gradient flow's. On the reduced two-layer path the
    field is the same formula in `z` (the objective's gradient there is the `z`-velocity of
    `W' = −∇_W F`, and its Jacobian is the `W`-Hessian seen in `z`), so descent in `z` is
    exactly Euler on it.

    **Arguments:**

    - `step_size`: the descent step `η > 0` it models (an array, so that changing it does not
      recompile).
    - `solver`, `rtol`, `atol`, `max_steps`: as in [`flowdip.GradientFlow`][].
    """

    step_size: Float[Array, ""]
    solver: dfx.AbstractSolver
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)

    def __init__(
        self,
        step_size,
        *,
        solver: dfx.AbstractSolver = dfx.Tsit5(),
        rtol: float = 1e-8,
        atol: float = 1e-10,
        max_steps: int = 100_000,
    ):
        self.step_size = _as_step_size(step_size)
        self.solver = solver
        self.rtol = float(rtol)
        self.atol = float(atol)
        self.max_steps = max_steps

    def __check_init__(self):
        _positive_scalar("step_size", self.step_size)
        _check_tolerances(self.rtol, self.atol, self.max_steps)

    @classmethod
    def reference(
        cls, step_size, *, rtol: float = 1e-12, atol: float = 1e-14, max_steps: int = 1_000_000
    ):
        """A float64 reference: Dopri8 with tight tolerances (as `GradientFlow.reference`)."""
        return cls(step_size, solver=dfx.Dopri8(), rtol=rtol, atol=atol, max_steps=max_steps)

    @property
    def needs_float64(self) -> bool:
        """Tolerances below float32 resolution need float64 states."""
        return self.rtol < 1e-6

    def vector_field(self, objective: Objective):
        """`−(∇F + (η/2) ∇²F ∇F)`, by one linearisation of the objective's gradient."""
        half_eta = self.step_size / 2

        def field(t, y, args):
            del t, args
            g, hvp = jax.linearize(objective.gradient, y)
            hg = hvp(g)
            return jax.tree_util.tree_map(lambda a, b: -(a + half_eta.astype(a.dtype) * b), g, hg)

        return field


class InertialFlow(AbstractFlow):
    r"""The inertial dynamics of P4 (THEORY.md §5), with viscous damping `α` and Hessian-driven
    damping `β`:

    $$\theta'' + \alpha\theta' + \beta\nabla^2F(\theta)\,\theta' + \nabla F(\theta) = 0,
      \qquad \theta(0) = \theta_0,\ \theta'(0) = 0,$$

    integrated in its first-order, Hessian-free form (with `ζ = θ' + β∇F(θ)`)

    $$\theta' = \zeta - \beta\nabla F(\theta), \qquad \zeta' = -\alpha\zeta + (\alpha\beta - 1)
      \nabla F(\theta).$$

    The ODE state is the pair `(θ, ζ)`; [`flowdip.Trajectory`][] records `θ` as for any flow
    and keeps the pair in `final_state` (see [`flowdip.InertialFlow.velocity`][]).

    **Arguments:**

    - `alpha`: viscous damping `α > 0`.
    - `beta`: Hessian-driven damping `β ≥ 0` (`β = 0` is the heavy-ball ODE).
    - `solver`, `rtol`, `atol`, `max_steps`: as in [`flowdip.GradientFlow`][].
    """

    alpha: Float[Array, ""]
    beta: Float[Array, ""]
    solver: dfx.AbstractSolver
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)

    def __init__(
        self,
        alpha,
        beta=0.0,
        *,
        solver: dfx.AbstractSolver = dfx.Tsit5(),
        rtol: float = 1e-8,
        atol: float = 1e-10,
        max_steps: int = 100_000,
    ):
        self.alpha = _as_step_size(alpha)
        self.beta = _as_step_size(beta)
        self.solver = solver
        self.rtol = float(rtol)
        self.atol = float(atol)
        self.max_steps = max_steps

    def __check_init__(self):
        _positive_scalar("alpha", self.alpha)
        _positive_scalar("beta", self.beta, allow_zero=True)
        _check_tolerances(self.rtol, self.atol, self.max_steps)

    @property
    def needs_float64(self) -> bool:
        """Tolerances below float32 resolution need float64 states."""
        return self.rtol < 1e-6

    def initial_state(self, objective: Objective, theta0: PyTree) -> PyTree:
        """`(θ₀, ζ₀)` with `ζ₀ = β∇F(θ₀)`, i.e. starting at rest (`θ'(0) = 0`)."""
        g = objective.gradient(theta0)
        return theta0, jax.tree_util.tree_map(lambda a: self.beta.astype(a.dtype) * a, g)

    def parameters(self, y: PyTree) -> PyTree:
        """`θ` from the state `(θ, ζ)`."""
        return y[0]

    def velocity(self, objective: Objective, y: PyTree) -> PyTree:
        """`θ' = ζ − β∇F(θ)` from the state `(θ, ζ)`."""
        theta, zeta = y
        g = objective.gradient(theta)
        return jax.tree_util.tree_map(lambda z, a: z - self.beta.astype(a.dtype) * a, zeta, g)

    def vector_field(self, objective: Objective):
        """`(θ, ζ)' = (ζ − β∇F, −αζ + (αβ − 1)∇F)`: one gradient per evaluation."""
        alpha, beta = self.alpha, self.beta

        def field(t, y, args):
            del t, args
            theta, zeta = y
            g = objective.gradient(theta)
            a = jax.tree_util.tree_map(lambda x: alpha.astype(x.dtype), g)
            b = jax.tree_util.tree_map(lambda x: beta.astype(x.dtype), g)
            dtheta = jax.tree_util.tree_map(lambda z, gi, bi: z - bi * gi, zeta, g, b)
            dzeta = jax.tree_util.tree_map(
                lambda z, gi, ai, bi: -ai * z + (ai * bi - 1) * gi, zeta, g, a, b
            )
            return dtheta, dzeta

        return field


class InertialDescent(AbstractDiscreteDynamics):
    r"""The explicit inertial algorithm (THEORY.md §5) that discretises
    [`flowdip.InertialFlow`][] with step `h` (one step is time `h`):

    $$\theta_{j+1} = \theta_j + (1 - \alpha h)(\theta_j - \theta_{j-1})
      - \beta h\big(\nabla F(\theta_j) - \nabla F(\theta_{j-1})\big) - h^2\nabla F(\theta_j),$$

    started at rest (`θ_{−1} = θ₀`). It is consistent of order one with the inertial ODE, and
    with `β = 0` it is Polyak's heavy ball with learning rate `h²` and momentum `1 − αh`. One
    gradient per step: the previous gradient is carried in the state `(θ_j, θ_{j−1},
    ∇F(θ_{j−1}))`. (P4's own algorithm, with an adaptive step, is not known; THEORY.md §8.10.)

    **Arguments:**

    - `step_size`: `h > 0`.
    - `alpha`: viscous damping `α > 0`.
    - `beta`: Hessian-driven damping `β ≥ 0`.
    """

    step_size: Float[Array, ""]
    alpha: Float[Array, ""]
    beta: Float[Array, ""]

    def __init__(self, step_size, alpha, beta=0.0):
        self.step_size = _as_step_size(step_size)
        self.alpha = _as_step_size(alpha)
        self.beta = _as_step_size(beta)

    def __check_init__(self):
        _positive_scalar("step_size", self.step_size)
        _positive_scalar("alpha", self.alpha)
        _positive_scalar("beta", self.beta, allow_zero=True)

    def initial_state(self, objective: Objective, theta0: PyTree) -> PyTree:
        """`(θ₀, θ₀, ∇F(θ₀))`: at rest."""
        return theta0, theta0, objective.gradient(theta0)

    def parameters(self, state: PyTree) -> PyTree:
        """`θ_j` from the state."""
        return state[0]

    def velocity(self, state: PyTree) -> PyTree:
        """The backward difference `(θ_j − θ_{j−1})/h`."""
        theta, prev, _ = state
        return jax.tree_util.tree_map(
            lambda a, b: (a - b) / self.step_size.astype(a.dtype), theta, prev
        )

    def step(self, objective: Objective, state: PyTree) -> tuple[Float[Array, ""], PyTree]:
        """One inertial step; returns `F(θ_j)` and `(θ_{j+1}, θ_j, ∇F(θ_j))`."""
        theta, prev, g_prev = state
        value, g = objective.value_and_gradient(theta)

        def update(x, xp, gi, gp):
            h = self.step_size.astype(x.dtype)
            a, b = self.alpha.astype(x.dtype), self.beta.astype(x.dtype)
            return x + (1 - a * h) * (x - xp) - b * h * (gi - gp) - h * h * gi

        new = jax.tree_util.tree_map(update, theta, prev, g, g_prev)
        return value, (new, theta, g)
