"""The implicit stages of a stiff gradient flow, solved with the structure of the Jacobian.

Diffrax's implicit Runge–Kutta solvers (Kvaerno3/5, ImplicitEuler) find each stage by a
root find on `r(f) = f − F(y_partial + a_ii Δt f)`, whose Jacobian is `I − a J` with
`a = a_ii Δt` and `J` the Jacobian of the vector field. Their default root finder builds and
factorises that `p × p` matrix; on the reduced two-layer path `J` is diagonal plus rank `m`
(`flowdip.FieldJacobian`), so `StructuredChord` solves with it through the
Woodbury identity, at `O(km²)` per factorisation and `O(mk)` per iteration, never forming a
`k × k` matrix. Elsewhere (W-space, MLP, ConvDIP) its linear solves are matrix-free GMRES on
Jacobian-vector products.
"""

from collections.abc import Callable

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import lineax as lx
import optimistix as optx

from .._objective import FieldJacobian, Objective
from .._typing import Array, Float, Int, PyTree


class WoodburySolve(eqx.Module):
    """`(I − aJ)⁻¹` for `J = −(diag(d) + U H Uᵀ)`, factorised once.

    With `Δ = 1 + a d` (diagonal) and `C = I + a H Uᵀ Δ⁻¹ U` (`m × m`, LU-factorised),
    `(Δ + a U H Uᵀ)⁻¹ b = Δ⁻¹b − Δ⁻¹U C⁻¹ a H Uᵀ Δ⁻¹ b`; `H` is never inverted, so a loss
    whose Hessian is singular is fine.
    """

    inv_delta: Float[Array, " k"]
    U: Float[Array, "k m"]
    aH: Float[Array, "m m"]
    lu: Float[Array, "m m"]
    pivots: Int[Array, " m"]

    @classmethod
    def factorise(cls, jac: FieldJacobian, a: Float[Array, ""]) -> "WoodburySolve":
        """Factorises `I − aJ` (`O(km²)` for the `m × m` capacitance matrix)."""
        inv_delta = 1 / (1 + a * jac.d)
        gram = jac.U.T @ (inv_delta[:, None] * jac.U)
        aH = a * jac.H
        capacitance = jnp.eye(gram.shape[0], dtype=gram.dtype) + aH @ gram
        lu, pivots = jsl.lu_factor(capacitance)
        return cls(inv_delta, jac.U, aH, lu, pivots)

    def __call__(self, b: Float[Array, " k"]) -> Float[Array, " k"]:
        """`(I − aJ)⁻¹ b` in `O(mk)`."""
        w = self.inv_delta * b
        s = jsl.lu_solve((self.lu, self.pivots), self.aH @ (self.U.T @ w))
        return w - self.inv_delta * (self.U @ s)


class KrylovSolve(eqx.Module):
    """`(I − aJ)⁻¹` where no structure is known: GMRES on Jacobian-vector products of the
    vector field at `y*` (two field evaluations per iteration, no matrix formed).

    The Jacobian is the negative Hessian of `F`: symmetric but indefinite away from a
    minimum, so GMRES rather than conjugate gradients. An inexact solve only slows the chord
    iteration, which checks its own convergence.
    """

    objective: Objective
    y_star: PyTree
    a: Float[Array, ""]
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)

    def __call__(self, b: PyTree) -> PyTree:
        """`(I − aJ)⁻¹ b` to the Krylov tolerances."""

        def field(y):
            return self.objective.vector_field(0.0, y)

        def matvec(v):
            jv = jax.jvp(field, (self.y_star,), (v,))[1]
            return jax.tree_util.tree_map(lambda x, w: x - self.a.astype(x.dtype) * w, v, jv)

        operator = lx.FunctionLinearOperator(matvec, jax.eval_shape(lambda: b))
        krylov = lx.GMRES(rtol=self.rtol, atol=self.atol, restart=40, stagnation_iters=40)
        return lx.linear_solve(operator, b, krylov, throw=False).value


class _ChordState(eqx.Module):
    inverse: WoodburySolve | KrylovSolve
    diffsize: Float[Array, ""]
    diffsize_prev: Float[Array, ""]
    step: Int[Array, ""]


def _stage_point(y: PyTree, args: tuple) -> tuple[PyTree, Float[Array, ""]]:
    """The point `y*` where a stage's vector field is evaluated, and `a = a_ii Δt`.

    Diffrax hands its implicit root finders the stage's arguments: in f-space
    `(stage, a_ii, vf, prod, t, y_partial, args, control)` with `y* = y_partial + a_ii f Δt`,
    in k-space `(stage, a_ii, vf_prod, t, y_partial, args, control)` with
    `y* = y_partial + a_ii k`. For an ODE the control is the step `Δt`.
    """
    if len(args) == 8:
        _, diagonal, _, prod, _, y_partial, _, control = args
        increment = prod(y, control)
    elif len(args) == 7:
        _, diagonal, _, _, y_partial, _, control = args
        increment = y
    else:
        raise TypeError(
            "StructuredChord is the root finder of a Diffrax implicit Runge–Kutta solver "
            f"(Kvaerno3/5, ImplicitEuler); it got stage arguments of length {len(args)}."
        )
    control = jnp.asarray(control)
    if control.shape != ():
        raise TypeError("StructuredChord solves ODEs only (a scalar control Δt).")
    y_star = jax.tree_util.tree_map(lambda p, i: p + diagonal * i, y_partial, increment)
    return y_star, diagonal * control


class StructuredChord(optx.AbstractRootFinder):
    """A chord (simplified Newton) root finder for the implicit stages of the gradient flow,
    whose linear solves use the Jacobian's structure on the reduced two-layer path
    (`WoodburySolve`) and Jacobian-vector products elsewhere (`KrylovSolve`).

    As in Diffrax's own chord method, the Jacobian is formed once per step (at the stage
    Diffrax chooses) and reused by every stage and iteration of the step. The iteration ends
    once the estimated distance to the root, `‖δ‖ θ/(1 − θ)` in the scaled max norm (`δ` the
    last correction, `θ` the observed contraction), is below `kappa`; it fails (and Diffrax
    rejects the step and shrinks it) if the corrections grow. `flowdip.GradientFlow.stiff`
    builds it with the flow's tolerances and binds it to the objective.

    **Arguments:** `rtol`, `atol` (scaling of the corrections), `kappa` (safety factor of the
    stopping test), `objective` (the objective whose Jacobian it uses).
    """

    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    objective: Objective | None = None
    kappa: float = eqx.field(static=True, default=1e-2)
    norm: Callable = eqx.field(static=True, default=optx.max_norm)

    def init(self, fn, y, args, options, f_struct, aux_struct, tags) -> _ChordState:
        """Factorises `I − aJ(y*)` at the stage point, unless Diffrax hands back a state."""
        del fn, f_struct, aux_struct, tags
        if "init_state" in options:
            return options["init_state"]
        if self.objective is None:
            raise ValueError(
                "StructuredChord must be bound to an objective (GradientFlow.stiff() does "
                "this in solve and sweep)."
            )
        y_star, a = _stage_point(y, args)
        if self.objective.reduced:
            inverse = WoodburySolve.factorise(self.objective.field_jacobian(y_star), a)
        else:
            # Tighter than the iteration it serves, so that the chord's rate stays small.
            inverse = KrylovSolve(self.objective, y_star, a, 1e-3 * self.rtol, 1e-3 * self.atol)
        dynamic, static = eqx.partition(inverse, eqx.is_array)
        inverse = eqx.combine(jax.lax.stop_gradient(dynamic), static)
        inf = jnp.full((), jnp.inf, jnp.result_type(*jax.tree_util.tree_leaves(y)))
        return _ChordState(inverse, inf, jnp.ones((), inf.dtype), jnp.zeros((), jnp.int32))

    def step(self, fn, y, args, options, state: _ChordState, tags):
        """One chord correction `y ← y − (I − aJ)⁻¹ r(y)`."""
        del options, tags
        residual, aux = fn(y, args)
        delta = state.inverse(residual)
        new_y = jax.tree_util.tree_map(jnp.subtract, y, delta)
        diffsize = self.norm(
            jax.tree_util.tree_map(
                lambda d, x: d / (self.atol + self.rtol * jnp.abs(x)), delta, new_y
            )
        )
        new_state = _ChordState(state.inverse, diffsize, state.diffsize, state.step + 1)
        return new_y, new_state, aux

    def terminate(self, fn, y, args, options, state: _ChordState, tags):
        """Converged once the estimated error is below `kappa`; diverged if it grows."""
        del fn, y, args, options, tags
        rate = state.diffsize / state.diffsize_prev
        two = state.step >= 2
        converged = (rate < 1) & (state.diffsize * rate / (1 - rate) < self.kappa)
        # A correction at round-off level cannot shrink further.
        tiny = state.diffsize < 100 * jnp.finfo(state.diffsize.dtype).eps
        diverged = ~jnp.isfinite(state.diffsize) | (rate > 2)
        done = two & (converged | tiny | diverged)
        result = optx.RESULTS.where(
            two & diverged & ~tiny, optx.RESULTS.nonlinear_divergence, optx.RESULTS.successful
        )
        return done, result

    def postprocess(self, fn, y, aux, args, options, state, tags, result):
        """The root as found."""
        del fn, args, options, state, tags, result
        return y, aux, {}


def bind_root_finder(solver: dfx.AbstractSolver, objective: Objective) -> dfx.AbstractSolver:
    """`solver` with its `StructuredChord` root finder bound to `objective` (the Woodbury
    solve on the reduced path, matrix-free GMRES elsewhere)."""
    return eqx.tree_at(
        lambda s: s.root_finder.objective, solver, objective, is_leaf=lambda x: x is None
    )
