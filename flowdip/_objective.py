"""The objective `F(θ) = ℓ_y(A g(u, θ))` and its one vector field `−∇F`."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from ._generator.networks import AbstractGenerator, TwoLayerDIP
from ._losses import AbstractLoss, MSE
from ._problem.problem import InverseProblem, operator_times_columns
from ._typing import Array, Float, PyTree, RealScalarLike


class FieldJacobian(eqx.Module):
    """The Jacobian of the reduced gradient-flow field, `J = −(diag(d) + U H Uᵀ)`: symmetric,
    diagonal plus rank `m`, so that a linear system in `I − aJ` costs `O(mk)` once an `m × m`
    matrix is factorised (docs/theory.md §3.3).

    **Fields:** `d` (`k`), `U` (`k × m`), `H` (`m × m`).
    """

    d: Float[Array, " k"]
    U: Float[Array, "k m"]
    H: Float[Array, "m m"]

    def matrix(self) -> Float[Array, "k k"]:
        """`J` as a dense matrix (for tests and small `k` only)."""
        return -(jnp.diag(self.d) + self.U @ self.H @ self.U.T)

    def matvec(self, v: Float[Array, " k"]) -> Float[Array, " k"]:
        """`J v` in `O(mk)`."""
        return -(self.d * v + self.U @ (self.H @ (self.U.T @ v)))


class Objective(eqx.Module):
    """`F(θ) = ℓ_y(A g(u, θ))` for a problem, a generator and a loss.

    Every dynamics reads the same vector field `−∇F` from here. The *state* a dynamics moves is
    either the trainable part of the generator (the generic path, gradients by autodiff) or,
    for a [`flowdip.TwoLayerDIP`][] that trains only `W`, the pre-activations `z = W u ∈ ℝᵏ`
    (the exact reduced path of docs/theory.md §3.2: every gradient in `W` is `(·) uᵀ`, so only `z`
    moves, at `O(mk)` per step with `B = A V/√k` precomputed). The reduced path is chosen
    automatically where it applies; [`flowdip.Objective.lift`][] maps a state back to a
    generator.

    **Arguments:**

    - `problem`: the [`flowdip.InverseProblem`][].
    - `generator`: the [`flowdip.AbstractGenerator`][] (its current parameters are `θ₀`).
    - `loss`: the [`flowdip.AbstractLoss`][] (default [`flowdip.MSE`][]).
    - `reduced`: force (`True`) or forbid (`False`) the reduced path; `None` chooses.
    """

    problem: InverseProblem
    generator: AbstractGenerator
    loss: AbstractLoss
    reduced: bool = eqx.field(static=True)
    frozen: PyTree
    B: Float[Array, "m k"] | None
    u_norm2: Float[Array, ""] | None

    def __init__(
        self,
        problem: InverseProblem,
        generator: AbstractGenerator,
        loss: AbstractLoss = MSE(),
        *,
        reduced: bool | None = None,
    ):
        n_out = generator().shape
        if n_out != (problem.n,):
            raise ValueError(
                f"The generator outputs signals of shape {n_out} but the problem's operator A "
                f"has shape {(problem.m, problem.n)}: the generator must output shape "
                f"{(problem.n,)}."
            )
        g_dtype = generator().dtype
        if g_dtype != problem.y.dtype:
            raise ValueError(
                f"The generator computes in {g_dtype} and the problem in {problem.y.dtype}; "
                "make both the same precision (flowdip never mixes them silently)."
            )
        applicable = isinstance(generator, TwoLayerDIP) and not generator.train_V
        if reduced is None:
            reduced = applicable
        elif reduced and not applicable:
            raise ValueError(
                "reduced=True needs a TwoLayerDIP whose only trained layer is W "
                f"(got {type(generator).__name__})."
            )
        self.problem = problem
        self.generator = generator
        self.loss = loss
        self.reduced = bool(reduced)
        if self.reduced:
            assert isinstance(generator, TwoLayerDIP)
            self.frozen = None
            self.u_norm2 = jnp.dot(generator.u, generator.u)
            V, c = generator.readout()
            self.B = operator_times_columns(problem.operator, V) * c
        else:
            self.frozen = generator.partition()[1]
            self.B = None
            self.u_norm2 = None

    # -- states --------------------------------------------------------------------------
    def initial_state(self) -> PyTree:
        """`θ₀` as a state: `z₀ = W₀ u` on the reduced path, the trainable leaves otherwise."""
        if self.reduced:
            return self.generator.z
        return self.generator.partition()[0]

    def lift(self, state: PyTree) -> AbstractGenerator:
        """The generator with parameters `θ` (on the reduced path `W = W₀ + (z − z₀) uᵀ/‖u‖²`)."""
        if self.reduced:
            g = self.generator
            W = g.W + jnp.outer(state - g.z, g.u) / self.u_norm2
            return eqx.tree_at(lambda m: m.W, g, W)
        return eqx.combine(state, self.frozen)

    def coordinates(self, state: PyTree) -> Float[Array, " p"]:
        """`θ − θ₀` flattened in coordinates where the Euclidean norm is the Frobenius norm.

        On the reduced path this is `(z − z₀)/‖u‖`, since `‖W − W₀‖_F = ‖z − z₀‖/‖u‖`.
        """
        if self.reduced:
            return (state - self.generator.z) / jnp.sqrt(self.u_norm2)
        flat, _ = ravel_pytree(state)
        flat0, _ = ravel_pytree(self.initial_state())
        return flat - flat0

    def displacement(self, state: PyTree) -> Float[Array, ""]:
        """`‖θ − θ₀‖` (Frobenius)."""
        return jnp.linalg.norm(self.coordinates(state))

    # -- the objective ---------------------------------------------------------------------
    def signal(self, state: PyTree) -> Float[Array, " n"]:
        """The signal `x = g(u, θ)`."""
        if self.reduced:
            g = self.generator
            V, c = g.readout()
            return V @ g.activation(state) * c
        return eqx.combine(state, self.frozen)()

    def measure(self, state: PyTree) -> Float[Array, " m"]:
        """The measurements `A g(u, θ)` (`B φ(z)` on the reduced path)."""
        if self.reduced:
            return self.B @ self.generator.activation(state)
        return self.problem.forward(self.signal(state))

    def value(self, state: PyTree) -> Float[Array, ""]:
        """`F(θ) = ℓ_y(A g(u, θ))`."""
        return self.loss(self.measure(state), self.problem.y)

    def value_and_gradient(self, state: PyTree) -> tuple[Float[Array, ""], PyTree]:
        """`F(θ)` and `∇F(θ)` in one pass.

        On the reduced path the gradient is `∇_W F · u = ‖u‖² φ'(z) ⊙ Bᵀ∇ℓ`, the velocity
        of `z` under `W' = −∇_W F`, so that explicit Euler in `z` is exactly gradient descent
        in `W`.
        """
        y = self.problem.y
        if self.reduced:
            g = self.generator
            phi, dphi = g.activation.value_and_derivative(state)
            v = self.B @ phi
            grad = self.u_norm2 * dphi * (self.B.T @ self.loss.gradient(v, y))
            return self.loss(v, y), grad
        v, pullback = jax.vjp(self.measure, state)
        (grad,) = pullback(self.loss.gradient(v, y))
        return self.loss(v, y), grad

    def gradient(self, state: PyTree) -> PyTree:
        """`∇F(θ)` (see `value_and_gradient` for the reduced path)."""
        return self.value_and_gradient(state)[1]

    def vector_field(self, t: RealScalarLike, state: PyTree, args=None) -> PyTree:
        """The gradient-flow field `−∇F(θ)`, with Diffrax's `(t, y, args)` signature."""
        del t, args
        return jax.tree_util.tree_map(jnp.negative, self.gradient(state))

    def field_jacobian(self, state: Float[Array, " k"]) -> FieldJacobian:
        """The Jacobian of `−∇F` at `z` on the reduced path, in its structured form.

        With `f(z) = −‖u‖² φ'(z) ⊙ Bᵀ∇ℓ(Bφ(z))`, differentiating gives
        `J = −‖u‖² (diag(φ''(z) ⊙ Bᵀ∇ℓ) + diag(φ'(z)) Bᵀ ∇²ℓ B diag(φ'(z)))`; the loss's
        Hessian `∇²ℓ` (`m × m`) comes from autodiff of its gradient.
        """
        if not self.reduced:
            raise ValueError(
                "field_jacobian needs the reduced path (a TwoLayerDIP that trains only W); "
                "on other generators use Jacobian-vector products of the vector field."
            )
        act = self.generator.activation
        y = self.problem.y
        phi, dphi = act.value_and_derivative(state)
        v = self.B @ phi
        grad = self.loss.gradient(v, y)
        hess = jax.jacfwd(lambda w: self.loss.gradient(w, y))(v)
        return FieldJacobian(
            d=self.u_norm2 * act.second_derivative(state) * (self.B.T @ grad),
            U=dphi[:, None] * self.B.T,
            H=self.u_norm2 * hess,
        )

    def recovery_error(self, state: PyTree) -> Float[Array, ""]:
        """`‖g(u, θ) − x̄‖`, or NaN when the ground truth is unknown."""
        x = self.signal(state)
        if self.problem.x_true is None:
            return jnp.full((), jnp.nan, x.dtype)
        return jnp.linalg.norm(x - self.problem.x_true)

    @property
    def dtype(self):
        """Floating dtype of the problem."""
        return self.problem.y.dtype
