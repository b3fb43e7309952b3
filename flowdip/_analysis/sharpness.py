"""Sharpness `λ_max(∇²F)`: Lanczos on Hessian-vector products (warm-startable, vmappable), the
Gauss–Newton part in closed form for the two-layer net, and sharpness along a trajectory."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jax.flatten_util import ravel_pytree

from .._linalg import lanczos, state_from_coordinates
from .._objective import Objective
from .._solve import Trajectory
from .._typing import Array, checked, Float, PyTree


class Sharpness(eqx.Module):
    """The extreme eigenvalues of the Hessian `∇²F(θ)` found by Lanczos.

    **Fields:**

    - `value`: `λ_max(∇²F(θ))`, the sharpness.
    - `vector`: its unit Ritz vector, flattened like the state (pass it as `init` at a nearby
      `θ` to warm-start the next estimate).
    - `smallest`: `λ_min(∇²F(θ))` (less accurate than `value` with few iterations; a negative
      value means the objective is not locally convex there).
    """

    value: Float[Array, ""]
    vector: Float[Array, " p"]
    smallest: Float[Array, ""]


def hessian_vector_product(objective: Objective, state: PyTree, v: PyTree) -> PyTree:
    """`∇²F(θ) v` as the derivative of the objective's gradient along `v` (forward over
    reverse).

    On the reduced two-layer path the state is `z = W u` and the objective's gradient is the
    `z`-velocity `‖u‖²∇_z F`; its Jacobian `‖u‖²∇²_z F` has the same non-zero eigenvalues as the
    `W`-Hessian (which acts as `H ↦ (∇²_z F H u) uᵀ`), so the sharpness is that of `F` in `W`.
    """
    return jax.jvp(objective.gradient, (state,), (v,))[1]


@checked
def sharpness(
    objective: Objective,
    state: PyTree,
    *,
    num_iters: int = 20,
    init: Float[Array, " p"] | None = None,
) -> Sharpness:
    """`λ_max(∇²F(θ))` by Lanczos on Hessian-vector products.

    Pure and fixed-cost, so it can be vmapped (over states, seeds or widths) and jitted. On the
    reduced two-layer path each product costs `O(mk)`.

    **Arguments:**

    - `objective`: the [`flowdip.Objective`][].
    - `state`: the parameters `θ` as a state of the objective (`z` on the reduced path, see
      [`flowdip.Objective.initial_state`][]).
    - `num_iters`: Lanczos steps (capped at the number of parameters); the extreme
      eigenvalue converges fast, 20 are plenty for the two-layer net.
    - `init`: a start vector (flattened like the state), e.g. the `vector` of a previous
      estimate at a nearby point; default a fixed random vector.

    **Returns:** a [`flowdip.Sharpness`][] (`.value` is `λ_max`).
    """
    if isinstance(num_iters, bool) or not isinstance(num_iters, int) or num_iters < 1:
        raise ValueError(f"num_iters must be an integer >= 1; got num_iters={num_iters!r}.")
    flat, unravel = ravel_pytree(state)
    if init is None:
        init = jr.normal(jr.key(0), flat.shape, flat.dtype)
    elif init.shape != flat.shape:
        raise ValueError(f"init has shape {init.shape}; the state flattens to {flat.shape}.")

    def matvec(v):
        return ravel_pytree(hessian_vector_product(objective, state, unravel(v)))[0]

    values, vector = lanczos(matvec, init.astype(flat.dtype), num_iters)
    return Sharpness(value=values[-1], vector=vector, smallest=values[0])


@checked
def gauss_newton_sharpness(objective: Objective, state: PyTree) -> Float[Array, ""]:
    """`λ_max` of the Gauss–Newton part `Jᵀ ∇²ℓ J` of the Hessian (`J` the Jacobian of
    `θ ↦ A g(u, θ)`), the part that does not depend on the residual.

    On the reduced two-layer path it is in closed form (docs/theory.md §8.3):
    `‖u‖² λ_max(H^{1/2} B diag(φ'(z)²) Bᵀ H^{1/2})` with `B = A V/√k` and `H = ∇²ℓ` (the
    identity for the MSE), an `m × m` eigenproblem; otherwise `J` comes from autodiff.

    **Returns:** the largest eigenvalue.
    """
    y = objective.problem.y
    if objective.reduced:
        phi, dphi = objective.generator.activation.value_and_derivative(state)
        v = objective.B @ phi
        J = objective.B * dphi[None, :]
        scale = objective.u_norm2
    else:
        flat, unravel = ravel_pytree(state)
        v = objective.measure(state)
        J = jax.jacfwd(lambda f: objective.measure(unravel(f)))(flat)
        scale = jnp.ones((), v.dtype)
    H = jax.hessian(lambda w: objective.loss(w, y))(v)
    lam, Q = jnp.linalg.eigh(H)
    root = (Q * jnp.sqrt(jnp.maximum(lam, 0))[None, :]) @ Q.T
    M = root @ (J @ J.T) @ root
    return scale * jnp.linalg.eigvalsh(M)[-1]


@checked
def sharpness_along(
    objective: Objective,
    trajectory: Trajectory,
    *,
    num_iters: int = 20,
    gauss_newton: bool = False,
) -> Float[Array, " T"] | tuple[Float[Array, " T"], Float[Array, " T"]]:
    """`λ_max(∇²F)` at every save of a trajectory, each Lanczos run warm-started from the
    previous save's top eigenvector.

    **Arguments:**

    - `objective`: the objective the trajectory was solved on.
    - `trajectory`: solved with `save_params=True`.
    - `num_iters`: Lanczos steps per save.
    - `gauss_newton`: also return the Gauss–Newton part's `λ_max` at each save.

    **Returns:** the sharpness at each save (NaN after the run stopped), or the pair
    `(sharpness, gauss_newton_sharpness)`.
    """
    if trajectory.params is None:
        raise ValueError("sharpness_along needs parameters: solve with save_params=True.")
    return _along(objective, trajectory.params, trajectory.valid, num_iters, gauss_newton)


@eqx.filter_jit
def _along(objective, params, valid, num_iters, gauss_newton):
    nan = jnp.full((), jnp.nan, params.dtype)

    def one(init, row):
        coords, ok = row
        # Saves after the stop are NaN: evaluate at θ₀ instead and mask the result.
        coords = jnp.where(ok, coords, 0)
        state = state_from_coordinates(objective, coords)
        s = sharpness(objective, state, num_iters=num_iters, init=init)
        init = jnp.where(ok, s.vector, init)
        out = jnp.where(ok, s.value, nan)
        gn = jnp.where(ok, gauss_newton_sharpness(objective, state), nan) if gauss_newton else out
        return init, (out, gn)

    flat0, _ = ravel_pytree(objective.initial_state())
    init = jr.normal(jr.key(0), flat0.shape, flat0.dtype)
    _, (values, gn) = jax.lax.scan(one, init, (params, valid))
    return (values, gn) if gauss_newton else values


@checked
def normalised_sharpness(objective: Objective, trajectory: Trajectory) -> Float[Array, " T"]:
    """`η · λ_max(∇²F)` along a discrete run with step size `η`: above 2, a descent step is
    unstable along the top eigenvector of the local quadratic model (the edge of stability)."""
    eta = trajectory.dynamics.step_size
    if eta is None:
        raise ValueError("normalised_sharpness needs a discrete run (a dynamics with step_size).")
    return eta.astype(trajectory.loss.dtype) * sharpness_along(objective, trajectory)
