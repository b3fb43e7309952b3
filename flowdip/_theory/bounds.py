"""The bounds a certificate is made of, beyond the closed forms of the two-layer net's
Jacobian: the activation's constants, matrix-free estimates of singular values and
Lipschitz constants for any generator, and the two-layer bound on `Lip(∇F)`."""

import math

import jax
import jax.numpy as jnp

from .._linalg import (
    gram_matvec,
    lanczos_extremes,
    power_norm,
    signal_map,
    state_from_coordinates,
)
from .._objective import Objective
from .._problem.problem import operator_times_columns
from .._typing import Array, PRNGKeyArray


_CONSTANTS: dict = {}


def activation_constants(act) -> tuple[float, float, float]:
    """`(B, C, C_φ')` of an activation, computed once per activation (quadrature)."""
    if act is None:
        return math.nan, math.nan, math.nan
    if act not in _CONSTANTS:
        with jax.ensure_compile_time_eval():
            _CONSTANTS[act] = (act.B, act.C, act.C_phi_prime)
    return _CONSTANTS[act]


def generic_sigma(
    objective: Objective, c: Array, key: PRNGKeyArray, iters: int | None
) -> tuple[Array, Array]:
    """`(σ_min(J_g), ‖J_g‖)` at coordinates `c`, by Lanczos on `J Jᵀ` through jvp∘vjp."""
    fn = signal_map(objective)
    lo, hi = lanczos_extremes(
        gram_matvec(fn, c), objective.problem.n, key, num_iters=iters, dtype=c.dtype
    )
    return jnp.sqrt(lo), jnp.sqrt(jnp.maximum(hi, 0))


def second_derivative_norm(
    objective: Objective, c: Array, h: Array, key: PRNGKeyArray, iters: int
) -> Array:
    """`‖D²g(c)[h, ·]‖` (an `n × p` operator) by power iteration on `M Mᵀ`."""
    fn = signal_map(objective)

    def M(v):
        return jax.jvp(lambda cc: jax.jvp(fn, (cc,), (v,))[1], (c,), (h,))[1]

    Mt = jax.linear_transpose(M, c)

    def mmt(w):
        return M(Mt(w)[0])

    return jnp.sqrt(power_norm(mmt, objective.problem.n, key, num_iters=iters, dtype=c.dtype))


def hessian_norm(objective: Objective, c: Array, key: PRNGKeyArray, iters: int) -> Array:
    """`‖∇²F(θ(c))‖` by power iteration on Hessian-vector products (jvp of grad)."""

    def F(cc):
        return objective.value(state_from_coordinates(objective, cc))

    grad = jax.grad(F)

    def hvp(v):
        return jax.jvp(grad, (c,), (v,))[1]

    return power_norm(hvp, c.shape[0], key, num_iters=iters, dtype=c.dtype)


def two_layer_L_bound(objective: Objective, norm_A: Array, rho: Array) -> Array:
    """The closed-form bound of docs/theory.md §8.3 on `Lip(∇F)` over `B(θ₀, ρ)` (two-layer net,
    loss with an `L_ℓ`-Lipschitz gradient), from the exact z-space Hessian
    `J_zᵀAᵀ∇²ℓ A J_z + diag(φ''(z) ⊙ VᵀAᵀ∇ℓ)/√k`, times `‖u‖²` for `W`."""
    net = objective.generator
    problem, loss = objective.problem, objective.loss
    L_ell = loss.gradient_lipschitz_constant
    with jax.ensure_compile_time_eval():
        B, C = net.activation.B, net.activation.C
    V, scale = net.readout()
    u2 = jnp.dot(net.u, net.u)
    norm_V = jnp.linalg.norm(V, 2)
    beta = B * jnp.sqrt(u2) * norm_V * scale
    max_AV = jnp.max(jnp.linalg.norm(operator_times_columns(problem.operator, V), axis=0))
    v0 = problem.forward(objective.signal(objective.initial_state()))
    grad0 = jnp.linalg.norm(loss.gradient(v0, problem.y))
    G = grad0 + L_ell * norm_A * beta * rho
    return u2 * (L_ell * norm_A**2 * B**2 * norm_V**2 * scale**2 + C * max_AV * scale * G)
