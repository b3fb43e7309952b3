"""Matrix-free linear algebra: Lanczos and power iterations on operators given only by their
action (Hessians, Gram matrices of Jacobians), in coordinates where the Euclidean norm is
`‖θ − θ₀‖`."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import jax.random as jr
from jax.flatten_util import ravel_pytree

from ._objective import Objective
from ._typing import Array, Float, PRNGKeyArray, PyTree


def state_from_coordinates(objective: Objective, coords: Float[Array, " p"]) -> PyTree:
    """The state `θ` whose isometric coordinates ([`flowdip.Objective.coordinates`][]) are
    `coords`, i.e. `θ − θ₀` as saved in `Trajectory.params`.

    On the reduced two-layer path `z = z₀ + ‖u‖ coords`; otherwise the trainable leaves are
    `θ₀ + coords` unflattened.

    **Arguments:**

    - `objective`: the [`flowdip.Objective`][] the coordinates belong to.
    - `coords`: the coordinates, flattened.

    **Returns:** the state, as [`flowdip.Objective.initial_state`][] gives it.
    """
    p = num_coordinates(objective)
    if jnp.shape(coords) != (p,):
        raise ValueError(f"coords must have shape {(p,)}; got shape {jnp.shape(coords)}.")
    if objective.reduced:
        return objective.generator.z + jnp.sqrt(objective.u_norm2) * coords
    flat0, unravel = ravel_pytree(objective.initial_state())
    return unravel(flat0 + coords)


def num_coordinates(objective: Objective) -> int:
    """The dimension `p` of the isometric coordinates."""
    if objective.reduced:
        return objective.generator.width
    return ravel_pytree(objective.initial_state())[0].shape[0]


def signal_map(objective: Objective) -> Callable[[Array], Array]:
    """`c ↦ g(u, θ(c))`: the generator in isometric coordinates (same singular values as
    `J_g` in the trained parameters)."""
    return lambda c: objective.signal(state_from_coordinates(objective, c))


def lanczos(
    matvec: Callable[[Array], Array], v0: Float[Array, " p"], num_iters: int
) -> tuple[Float[Array, " m"], Float[Array, " p"]]:
    """The Ritz values and the top Ritz vector of a symmetric operator known by its action,
    after `m = min(num_iters, p)` Lanczos steps from `v0`.

    Full reorthogonalisation (twice, for float round-off). With `m = p` the Ritz values are the
    eigenvalues up to round-off; with fewer they bound the spectrum from inside. A breakdown
    (an invariant subspace was found) ends the iteration: the Krylov space already holds every
    eigenvalue that `v0` touches, extremes included.

    **Arguments:**

    - `matvec`: `v ↦ M v` on flat vectors of size `p`.
    - `v0`: the start vector (any norm), e.g. the top Ritz vector of a nearby operator.
    - `num_iters`: the number of Lanczos steps.

    **Returns:** `(ritz_values, vector)`: the `m` Ritz values in increasing order and the unit
    Ritz vector of the largest.
    """
    p = v0.shape[0]
    m = min(num_iters, p)
    dtype = v0.dtype
    eps = jnp.finfo(dtype).eps
    v0 = v0 / jnp.linalg.norm(v0)

    def body(i, carry):
        basis, alphas, betas, v, v_prev, beta_prev, alive, scale = carry
        basis = basis.at[i].set(v)
        w = matvec(v)
        a = jnp.dot(v, w)
        w = w - a * v - beta_prev * v_prev
        w = w - basis.T @ (basis @ w)
        w = w - basis.T @ (basis @ w)
        b = jnp.linalg.norm(w)
        scale = jnp.maximum(scale, jnp.abs(a) + b)
        # After a breakdown the remaining diagonal entries repeat the first Rayleigh quotient,
        # which lies inside the spectrum and so moves neither extreme Ritz value.
        a = jnp.where(alive, a, alphas[0])
        next_alive = alive & (b > 1e3 * eps * scale)
        v_next = jnp.where(next_alive, w / jnp.where(next_alive, b, 1), 0)
        b = jnp.where(next_alive, b, 0)
        alphas = alphas.at[i].set(a)
        betas = betas.at[i].set(b)
        return basis, alphas, betas, v_next, v, b, next_alive, scale

    zero = jnp.zeros((), dtype)
    carry = (
        jnp.zeros((m, p), dtype),
        jnp.zeros((m,), dtype),
        jnp.zeros((m,), dtype),
        v0,
        jnp.zeros_like(v0),
        zero,
        jnp.array(True),
        zero,
    )
    basis, alphas, betas, *_ = jax.lax.fori_loop(0, m, body, carry)
    off = betas[: m - 1]
    T = jnp.diag(alphas) + jnp.diag(off, 1) + jnp.diag(off, -1)
    evals, evecs = jnp.linalg.eigh(T)
    vec = basis.T @ evecs[:, -1]
    # A breakdown at the first step (`v0` is an eigenvector, e.g. a warm start at a nearby
    # point) leaves a diagonal `T` whose entries all equal `λ`; `eigh` may then return a top
    # eigenvector supported on the dead rows, whose basis vectors are zero. `v0` is the
    # eigenvector in that case (a NaN vector would poison every later warm start).
    norm = jnp.linalg.norm(vec)
    vec = jnp.where(norm > 0, vec / jnp.where(norm > 0, norm, 1), v0)
    return evals, vec


def lanczos_extremes(
    matvec: Callable[[Array], Array],
    size: int,
    key: PRNGKeyArray,
    *,
    num_iters: int | None = None,
    dtype=None,
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """`(λ_min, λ_max)` of a symmetric positive semi-definite operator known by its action:
    `lanczos` from a random start, `size` steps by default (exact up
    to round-off). With fewer steps `λ_min` is bounded from above and `λ_max` from below.
    """
    dtype = jnp.result_type(float) if dtype is None else dtype
    iters = size if num_iters is None else min(num_iters, size)
    evals, _ = lanczos(matvec, jr.normal(key, (size,), dtype), iters)
    return jnp.maximum(evals[0], 0), evals[-1]


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
