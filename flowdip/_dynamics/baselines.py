"""Second-order baselines through Optimistix (Gauss–Newton, Levenberg–Marquardt, BFGS) as
discrete dynamics, so that `solve`, `compare`, `sweep` and the plots treat them like descent."""

from typing import ClassVar

import equinox as eqx
import jax
import optimistix as optx

from .._losses import MSE
from .._objective import Objective
from .._typing import Array, Float, PyTree
from .base import AbstractDiscreteDynamics, as_step_size, check_positive_scalar


def _value_fn(state, objective: Objective):
    return objective.value(state), None


def _residual_fn(state, objective: Objective):
    # `½‖r‖²` with `r = A g(u, θ) − y` is the MSE objective; Optimistix's least-squares
    # solvers minimise `Σ r²`, which has the same steps.
    return objective.measure(state) - objective.problem.y, None


_TAGS = frozenset()


class OptimistixBaseline(AbstractDiscreteDynamics):
    """One iteration of an Optimistix minimiser or least-squares solver per step, on `F`.

    The iteration counter is the time axis (`step_size`, default 1, is the time one iteration
    takes), so a baseline is saved, stopped ([`flowdip.LossBelow`][]), batched
    ([`flowdip.sweep`][]) and plotted exactly like [`flowdip.GradientDescent`][] at `η = 1`;
    its `Trajectory` has the same fields. Optimistix's own termination test is not used: the
    run ends on the stop rule or the step cap, like every other dynamics.

    Least-squares solvers (`optx.GaussNewton`, `optx.LevenbergMarquardt`, …) need the
    [`flowdip.MSE`][] loss, whose residual is `A g(u, θ) − y`; minimisers (`optx.BFGS`, …) work
    with any loss. On the reduced two-layer path the solver sees `z = W u`, which is `W` up
    to the isometry `‖u‖ = 1` of the papers' initialisation.

    **Arguments:**

    - `solver`: an `optimistix.AbstractMinimiser` or `optimistix.AbstractLeastSquaresSolver`.
    - `step_size`: time per iteration (default 1).

    The constructors [`flowdip.OptimistixBaseline.gauss_newton`][],
    [`flowdip.OptimistixBaseline.levenberg_marquardt`][] and
    [`flowdip.OptimistixBaseline.bfgs`][] give the three standard ones.
    """

    # A solver iteration (a linear solve, a line search) costs far more than the loop around
    # it, and each traced copy of it costs compile time.
    unroll: ClassVar[int] = 1
    short_name: ClassVar[str] = "Optimistix"
    solver: optx.AbstractMinimiser | optx.AbstractLeastSquaresSolver
    step_size: Float[Array, ""]

    def __init__(self, solver, *, step_size=1.0):
        if not isinstance(solver, optx.AbstractMinimiser | optx.AbstractLeastSquaresSolver):
            raise TypeError(
                "solver must be an optimistix minimiser or least-squares solver; got "
                f"{type(solver).__name__}."
            )
        self.solver = solver
        self.step_size = as_step_size(step_size)

    def __check_init__(self):
        check_positive_scalar("step_size", self.step_size)

    @classmethod
    def gauss_newton(cls, *, rtol: float = 1e-10, atol: float = 1e-12) -> "OptimistixBaseline":
        """Gauss–Newton (`optimistix.GaussNewton`, MSE only)."""
        return cls(optx.GaussNewton(rtol=rtol, atol=atol))

    @classmethod
    def levenberg_marquardt(
        cls, *, rtol: float = 1e-10, atol: float = 1e-12
    ) -> "OptimistixBaseline":
        """Levenberg–Marquardt (`optimistix.LevenbergMarquardt`, MSE only)."""
        return cls(optx.LevenbergMarquardt(rtol=rtol, atol=atol))

    @classmethod
    def bfgs(cls, *, rtol: float = 1e-10, atol: float = 1e-12) -> "OptimistixBaseline":
        """BFGS with a backtracking line search (`optimistix.BFGS`), any loss."""
        return cls(optx.BFGS(rtol=rtol, atol=atol))

    def label(self) -> str:
        """`<solver name> η=<step size>`."""
        return super().label().replace(self.short_name, self.name, 1)

    @property
    def name(self) -> str:
        """The solver's class name (`GaussNewton`, `LevenbergMarquardt`, `BFGS`, …)."""
        return type(self.solver).__name__

    def _fn(self, objective: Objective):
        if isinstance(self.solver, optx.AbstractLeastSquaresSolver):
            if not isinstance(objective.loss, MSE):
                raise ValueError(
                    f"{self.name} is a least-squares solver and needs the MSE loss; the "
                    f"objective uses {type(objective.loss).__name__}. Use "
                    "OptimistixBaseline.bfgs() for other losses."
                )
            return _residual_fn
        return _value_fn

    def _init(self, objective: Objective, theta: PyTree):
        fn = self._fn(objective)
        f_struct = jax.eval_shape(lambda: fn(theta, objective)[0])
        return self.solver.init(fn, theta, objective, {}, f_struct, None, _TAGS)

    def initial_state(self, objective: Objective, theta0: PyTree) -> PyTree:
        """`(θ₀, the array part of the solver's initial state)`."""
        dynamic, _ = eqx.partition(self._init(objective, theta0), eqx.is_array)
        return theta0, dynamic

    def parameters(self, state: PyTree) -> PyTree:
        """The solver's current (last accepted) iterate."""
        return state[0]

    def step(self, objective: Objective, state: PyTree) -> tuple[Float[Array, ""], PyTree]:
        """`F` at the current iterate and one solver step."""
        theta, dynamic = state
        value = objective.value(theta)
        # The solver state holds traced code (linearisations) next to arrays; only the arrays
        # travel through the loop, the code is rebuilt at trace time from `init`, as
        # Optimistix's own loop does (its static part never changes between steps).
        _, static = eqx.partition(self._init(objective, theta), eqx.is_array)
        inner = eqx.combine(dynamic, static)
        fn = self._fn(objective)
        new_theta, inner, _ = self.solver.step(fn, theta, objective, {}, inner, _TAGS)
        dynamic, _ = eqx.partition(inner, eqx.is_array)
        return value, (new_theta, dynamic)
