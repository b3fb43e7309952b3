"""Discrete dynamics: gradient descent (explicit Euler of the gradient flow) and the explicit
inertial algorithm."""

from typing import ClassVar

import equinox as eqx
import jax

from .._objective import Objective
from .._typing import Array, Float, PyTree
from .base import AbstractDiscreteDynamics, as_step_size, check_positive_scalar


class GradientDescent(AbstractDiscreteDynamics):
    """Gradient descent `θ_{τ+1} = θ_τ − η ∇F(θ_τ)`: explicit Euler on the gradient flow's
    field with step `η`.

    **Arguments:**

    - `step_size`: `η > 0` (an array, so that changing it does not recompile).
    """

    unroll: ClassVar[int] = 4
    short_name: ClassVar[str] = "GD"
    step_size: Float[Array, ""] = eqx.field(converter=as_step_size)

    def __check_init__(self):
        check_positive_scalar("step_size", self.step_size)

    def initial_state(self, objective: Objective, theta0: PyTree) -> PyTree:
        """`θ₀` itself."""
        del objective
        return theta0

    def parameters(self, state: PyTree) -> PyTree:
        """The state itself."""
        return state

    def step(self, objective: Objective, state: PyTree) -> tuple[Float[Array, ""], PyTree]:
        """One explicit-Euler step of `−∇F`."""
        value, grad = objective.value_and_gradient(state)
        eta = self.step_size
        new = jax.tree_util.tree_map(lambda s, g: s - eta.astype(g.dtype) * g, state, grad)
        return value, new


class InertialDescent(AbstractDiscreteDynamics):
    r"""The explicit inertial algorithm (docs/theory.md §9) that discretises
    [`flowdip.InertialFlow`][] with step `h` (one step is time `h`):

    $$\theta_{j+1} = \theta_j + (1 - \alpha h)(\theta_j - \theta_{j-1})
      - \beta h\big(\nabla F(\theta_j) - \nabla F(\theta_{j-1})\big) - h^2\nabla F(\theta_j),$$

    started at rest (`θ_{−1} = θ₀`). It is consistent of order one with the inertial ODE, and
    with `β = 0` it is Polyak's heavy ball with learning rate `h²` and momentum `1 − αh`. One
    gradient per step: the previous gradient is carried in the state `(θ_j, θ_{j−1},
    ∇F(θ_{j−1}))`. (P4's own algorithm, with an adaptive step, is not known; docs/theory.md
    §13 item 10.)

    **Arguments:**

    - `step_size`: `h > 0`.
    - `alpha`: viscous damping `α > 0`.
    - `beta`: Hessian-driven damping `β ≥ 0`.
    """

    unroll: ClassVar[int] = 4
    short_name: ClassVar[str] = "inertial descent"
    step_size: Float[Array, ""]
    alpha: Float[Array, ""]
    beta: Float[Array, ""]

    def __init__(self, step_size, alpha, beta=0.0):
        self.step_size = as_step_size(step_size)
        self.alpha = as_step_size(alpha, "alpha")
        self.beta = as_step_size(beta, "beta")

    def __check_init__(self):
        check_positive_scalar("step_size", self.step_size)
        check_positive_scalar("alpha", self.alpha)
        check_positive_scalar("beta", self.beta, allow_zero=True)

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
