"""Matrix-free linear algebra for the theory layer: Lanczos and power iterations on operators
given only by their action, in coordinates where the Euclidean norm is `‖θ − θ₀‖`."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import jax.random as jr
from jax.flatten_util import ravel_pytree

from ._objective import Objective
from ._typing import Array, Float, PRNGKeyArray, PyTree


def state_from_coordinates(objective: Objective, c: Float[Array, " p"]) -> PyTree:
    """The state `θ` whose isometric coordinates ([`flowdip.Objective.coordinates`][]) are `c`.

    On the reduced two-layer path `z = z₀ + ‖u‖ c`; otherwise the trainable leaves are
    `θ₀ + c` unflattened.
    """
    if objective.reduced:
        return objective.generator.z + jnp.sqrt(objective.u_norm2) * c
    flat0, unravel = ravel_pytree(objective.initial_state())
    return unravel(flat0 + c)


def num_coordinates(objective: Objective) -> int:
    """The dimension `p` of the isometric coordinates."""
    if objective.reduced:
        return objective.generator.width
    return ravel_pytree(objective.initial_state())[0].shape[0]


def signal_map(objective: Objective) -> Callable[[Array], Array]:
    """`c ↦ g(u, θ(c))`: the generator in isometric coordinates (same singular values as
    `J_g` in the trained parameters)."""
    return lambda c: objective.signal(state_from_coordinates(objective, c))


def lanczos_extremes(
    matvec: Callable[[Array], Array],
    size: int,
    key: PRNGKeyArray,
    *,
    num_iters: int | None = None,
    dtype=None,
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """`(λ_min, λ_max)` of a symmetric positive semi-definite operator known by its action.

    Lanczos with full reorthogonalisation; after `size` iterations it is exact up to round-off
    (a breakdown, i.e. an invariant subspace, restarts from a fresh random vector orthogonal
    to the basis). With fewer iterations the Ritz values bound the spectrum from inside:
    `λ_min` from above, `λ_max` from below.
    """
    dtype = jnp.result_type(float) if dtype is None else dtype
    iters = size if num_iters is None else min(num_iters, size)
    k_start, k_restart = jr.split(key)
    q0 = jr.normal(k_start, (size,), dtype)
    q0 = q0 / jnp.linalg.norm(q0)
    Q = jnp.zeros((iters + 1, size), dtype).at[0].set(q0)

    def orthogonalise(v, Q):
        for _ in range(2):  # twice is enough (Kahan–Parlett)
            v = v - Q.T @ (Q @ v)
        return v

    def body(j, carry):
        Q, alpha, beta = carry
        q = Q[j]
        w = matvec(q)
        a = jnp.dot(q, w)
        w = orthogonalise(w, Q)
        b = jnp.linalg.norm(w)
        scale = jnp.maximum(jnp.abs(a), 1e-300)
        fresh = orthogonalise(jr.normal(jr.fold_in(k_restart, j), (size,), dtype), Q)
        fresh = fresh / jnp.maximum(jnp.linalg.norm(fresh), 1e-300)
        broke = b <= 1e3 * jnp.finfo(dtype).eps * scale
        nxt = jnp.where(broke, fresh, w / jnp.where(broke, 1, b))
        return Q.at[j + 1].set(nxt), alpha.at[j].set(a), beta.at[j].set(jnp.where(broke, 0, b))

    alpha = jnp.zeros((iters,), dtype)
    beta = jnp.zeros((iters,), dtype)
    Q, alpha, beta = jax.lax.fori_loop(0, iters, body, (Q, alpha, beta))
    T = jnp.diag(alpha) + jnp.diag(beta[:-1], 1) + jnp.diag(beta[:-1], -1)
    lam = jnp.linalg.eigvalsh(T)
    return jnp.maximum(lam[0], 0), lam[-1]


def power_norm(
    matvec: Callable[[Array], Array],
    size: int,
    key: PRNGKeyArray,
    *,
    num_iters: int = 50,
    dtype=None,
) -> Float[Array, ""]:
    """`‖M‖` of a symmetric operator by power iteration (a lower bound that converges to it)."""
    dtype = jnp.result_type(float) if dtype is None else dtype
    v = jr.normal(key, (size,), dtype)
    v = v / jnp.linalg.norm(v)

    def body(_, v):
        w = matvec(v)
        return w / jnp.maximum(jnp.linalg.norm(w), 1e-300)

    v = jax.lax.fori_loop(0, num_iters, body, v)
    return jnp.linalg.norm(matvec(v))


def gram_matvec(fn: Callable[[Array], Array], c: Float[Array, " p"]):
    """`w ↦ J Jᵀ w` for `J = ∂fn(c)`, matrix-free (one vjp and one jvp)."""
    _, pullback = jax.vjp(fn, c)

    def mv(w):
        (v,) = pullback(w)
        return jax.jvp(fn, (c,), (v,))[1]

    return mv


def random_in_ball(
    key: PRNGKeyArray, size: int, radius: Float[Array, ""], dtype=None
) -> Float[Array, " p"]:
    """A point drawn uniformly in the ball of radius `radius` around 0 in `ℝᵖ`."""
    dtype = jnp.result_type(float) if dtype is None else dtype
    k_dir, k_rad = jr.split(key)
    v = jr.normal(k_dir, (size,), dtype)
    r = radius * jr.uniform(k_rad, (), dtype) ** (1 / size)
    return r * v / jnp.linalg.norm(v)
