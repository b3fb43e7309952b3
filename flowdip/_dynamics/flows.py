"""Flows on the one vector field: the gradient flow, the modified flow of descent, and the
inertial flow (all integrated by Diffrax)."""

import diffrax as dfx
import equinox as eqx
import jax
import optimistix as optx

from .._objective import Objective
from .._typing import Array, check_int, check_real, Float, PyTree, Size
from .base import AbstractFlow, as_step_size, check_flow_fields, check_positive_scalar
from .stiff import bind_root_finder, StructuredChord


class GradientFlow(AbstractFlow):
    """The gradient flow `θ' = −∇F(θ)`, integrated by Diffrax.

    **Arguments:**

    - `solver`: a Diffrax solver (default `diffrax.Tsit5()`).
    - `rtol`, `atol`: tolerances of the PID step-size controller.
    - `max_steps`: the solver's step budget. A run that ends on it has result
      `max_steps_reached` with `stop_time` below the horizon.
    - `norm`: the norm of the controller's error estimate, `"rms"` (default) or `"max"`
      (what sweeps need: a padded, masked run then takes the steps of the unpadded run).

    [`flowdip.GradientFlow.reference`][] gives a tight float64 reference (Dopri8 at 1e-12);
    [`flowdip.GradientFlow.for_sweeps`][] the flow that phase sweeps run.
    """

    solver: dfx.AbstractSolver = dfx.Tsit5()
    rtol: float = eqx.field(static=True, converter=lambda x: check_real("rtol", x), default=1e-8)
    atol: float = eqx.field(static=True, converter=lambda x: check_real("atol", x), default=1e-10)
    max_steps: int = eqx.field(
        static=True, converter=lambda x: check_int("max_steps", x), default=100_000
    )
    norm: str = eqx.field(static=True, default="rms")
    step_size: None = eqx.field(static=True, default=None, init=False)

    def __check_init__(self):
        check_flow_fields(self.rtol, self.atol, self.max_steps, self.norm)

    @classmethod
    def reference(cls, *, rtol: float = 1e-12, atol: float = 1e-14, max_steps: Size = 1_000_000):
        """A float64 reference flow: Dopri8 with tight tolerances.

        [`flowdip.solve`][] refuses to run it on a float32 objective.
        """
        return cls(solver=dfx.Dopri8(), rtol=rtol, atol=atol, max_steps=max_steps)

    @classmethod
    def for_sweeps(cls, *, rtol: float = 1e-6, atol: float = 1e-9, max_steps: Size = 10_000):
        """The flow as sweeps run it: Tsit5 under a PID controller in the max norm, with a
        per-run step budget that ends runs which neither converge nor reach the horizon (a
        stiff non-converging flow would otherwise take hundreds of thousands of steps)."""
        return cls(rtol=rtol, atol=atol, max_steps=max_steps, norm="max")

    @classmethod
    def stiff(
        cls,
        *,
        rtol: float = 1e-6,
        atol: float = 1e-9,
        max_steps: Size = 10_000,
        norm: str = "max",
        solver: dfx.AbstractSolver | None = None,
    ):
        """The flow for stiff problems: an implicit solver (`diffrax.Kvaerno5` unless
        `solver` names another implicit Runge–Kutta solver) whose stage equations are solved
        with the structure of the Jacobian (Woodbury through an `m × m` system on the reduced
        two-layer path, matrix-free GMRES elsewhere).

        An explicit solver needs about `λ_max/2` steps per unit of time; this one takes steps
        set by accuracy alone, so it pays off once `λ_max · t₁` is large (a horizon of many
        times `1/λ_max`; see the docs page on the stiff gradient flow). Float64 only:
        [`flowdip.solve`][] refuses it on a float32 objective. The defaults are those of
        [`flowdip.GradientFlow.for_sweeps`][] (max norm, a step budget that ends runs).
        """
        solver = dfx.Kvaerno5() if solver is None else solver
        if not isinstance(getattr(solver, "root_finder", None), optx.AbstractRootFinder):
            raise TypeError(
                "GradientFlow.stiff needs an implicit Diffrax solver with a root finder "
                f"(Kvaerno3, Kvaerno5, ImplicitEuler, …); got {type(solver).__name__}."
            )
        marker = StructuredChord(rtol=rtol, atol=atol)
        solver = eqx.tree_at(lambda s: s.root_finder, solver, marker)
        return cls(solver=solver, rtol=rtol, atol=atol, max_steps=max_steps, norm=norm)

    @property
    def is_stiff(self) -> bool:
        """Whether this flow's implicit stages use the structured linear solve."""
        return isinstance(getattr(self.solver, "root_finder", None), StructuredChord)

    @property
    def needs_float64(self) -> bool:
        """Tolerances below float32 resolution, or the stiff solver, need float64 states."""
        return self.rtol < 1e-6 or self.is_stiff

    def solver_for(self, objective: Objective) -> dfx.AbstractSolver:
        """The solver, with the stiff flow's root finder bound to `objective`."""
        if self.is_stiff:
            return bind_root_finder(self.solver, objective)
        return self.solver

    def label(self) -> str:
        """`gradient flow`."""
        return "gradient flow"

    def initial_state(self, objective: Objective, theta0: PyTree) -> PyTree:
        """`θ₀` itself."""
        del objective
        return theta0

    def parameters(self, state: PyTree) -> PyTree:
        """The state itself."""
        return state

    def vector_field(self, objective: Objective):
        """`−∇F`, read from the objective."""
        return objective.vector_field


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
    - `solver`, `rtol`, `atol`, `max_steps`, `norm`: as in [`flowdip.GradientFlow`][].
    """

    step_size: Float[Array, ""]
    solver: dfx.AbstractSolver
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    norm: str = eqx.field(static=True)

    def __init__(
        self,
        step_size,
        *,
        solver: dfx.AbstractSolver = dfx.Tsit5(),
        rtol: float = 1e-8,
        atol: float = 1e-10,
        max_steps: Size = 100_000,
        norm: str = "rms",
    ):
        self.step_size = as_step_size(step_size)
        self.solver = solver
        self.rtol = check_real("rtol", rtol)
        self.atol = check_real("atol", atol)
        self.max_steps = check_int("max_steps", max_steps)
        self.norm = norm

    def __check_init__(self):
        check_positive_scalar("step_size", self.step_size)
        check_flow_fields(self.rtol, self.atol, self.max_steps, self.norm)

    @classmethod
    def reference(
        cls, step_size, *, rtol: float = 1e-12, atol: float = 1e-14, max_steps: Size = 1_000_000
    ):
        """A float64 reference: Dopri8 with tight tolerances (as `GradientFlow.reference`)."""
        return cls(step_size, solver=dfx.Dopri8(), rtol=rtol, atol=atol, max_steps=max_steps)

    def label(self) -> str:
        """`modified flow`."""
        return "modified flow"

    def initial_state(self, objective: Objective, theta0: PyTree) -> PyTree:
        """`θ₀` itself."""
        del objective
        return theta0

    def parameters(self, state: PyTree) -> PyTree:
        """The state itself."""
        return state

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
    r"""The inertial dynamics of P4 (docs/theory.md §9), with viscous damping `α` and
    Hessian-driven damping `β`:

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
    - `solver`, `rtol`, `atol`, `max_steps`, `norm`: as in [`flowdip.GradientFlow`][].
    """

    alpha: Float[Array, ""]
    beta: Float[Array, ""]
    solver: dfx.AbstractSolver
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    norm: str = eqx.field(static=True)
    step_size: None = eqx.field(static=True)

    def __init__(
        self,
        alpha,
        beta=0.0,
        *,
        solver: dfx.AbstractSolver = dfx.Tsit5(),
        rtol: float = 1e-8,
        atol: float = 1e-10,
        max_steps: Size = 100_000,
        norm: str = "rms",
    ):
        self.alpha = as_step_size(alpha, "alpha")
        self.beta = as_step_size(beta, "beta")
        self.solver = solver
        self.rtol = check_real("rtol", rtol)
        self.atol = check_real("atol", atol)
        self.max_steps = check_int("max_steps", max_steps)
        self.norm = norm
        self.step_size = None

    def __check_init__(self):
        check_positive_scalar("alpha", self.alpha)
        check_positive_scalar("beta", self.beta, allow_zero=True)
        check_flow_fields(self.rtol, self.atol, self.max_steps, self.norm)

    def label(self) -> str:
        """`inertial flow`."""
        return "inertial flow"

    def initial_state(self, objective: Objective, theta0: PyTree) -> PyTree:
        """`(θ₀, ζ₀)` with `ζ₀ = β∇F(θ₀)`, i.e. starting at rest (`θ'(0) = 0`)."""
        g = objective.gradient(theta0)
        return theta0, jax.tree_util.tree_map(lambda a: self.beta.astype(a.dtype) * a, g)

    def parameters(self, state: PyTree) -> PyTree:
        """`θ` from the state `(θ, ζ)`."""
        return state[0]

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
