"""Recovery guarantees (docs/theory.md §5, §7.3, §10.5): the distance of `x̄` to the
reachable signals `Σ'`, restricted-injectivity estimates, the three-term bound of Theorem B
against the observed `‖x(t) − x̄‖`, and the early-stopping time under noise."""

import equinox as eqx
import jax
import jax.numpy as jnp

from .._linalg import num_coordinates, signal_map, state_from_coordinates
from .._losses import AbstractLoss
from .._objective import Objective
from .._solve import Trajectory
from .._typing import Array, Bool, check_int, check_positive, checked, Float, RealScalarLike
from .certificate import certify
from .results import Certificate


class Recovery(eqx.Module):
    """Recovery quantities of one run, from [`flowdip.recovery`][].

    **Fields:**

    - `radius`: the radius `ρ` of `Σ' = {g(u, θ) : ‖θ − θ₀‖ ≤ ρ}` (default `R'`, or `R'_GD`
      for descent).
    - `x_proj`, `dist`: a point of `Σ'` nearest to `x̄` found by projected descent, and
      `‖x̄ − x_proj‖`, an upper bound of `dist(x̄, Σ')` (docs/theory.md §10.5).
    - `mu_pair`: `‖A(x_∞ − x_Σ')‖/‖x_∞ − x_Σ'‖`, `x_∞` the run's final signal; `mu_traj`: the
      minimum of the same ratio along the run. Both are upper bounds of `μ_{A,Σ'}`.
    - `lip_g`: `Lip(g)` on the ball (closed form for the two-layer net, sampled otherwise).
    - `noise_norm`: `‖ε‖`; `norm_A`: `‖A‖`.
    - `ts`, `valid`, `error`: the run's save times, mask and `‖x(t) − x̄‖`.
    - `optimisation_term`: `(Lip(g)/(f σ_A σ₀ c)) ψ(Ψ⁻¹(Γ(t)))` (`c = c_γ` for descent, 1 for
      the flow); `noise_term`: `‖ε‖/μ`; `expressivity_term`: `(1 + ‖A‖/μ) dist`, with
      `μ = mu_pair`; `bound`: their sum (Theorem B, docs/theory.md §7.3).
    - `early_stopping_time`: `t*`, where the optimisation term meets the noise term
      (docs/theory.md §7.3); `best_time`, `best_error`: where the observed error is smallest.
    - `condition`: whether the certificate's `R' < R` holds for this dynamics (without it the
      bound is not guaranteed).
    """

    radius: Float[Array, ""]
    x_proj: Float[Array, " n"]
    dist: Float[Array, ""]
    mu_pair: Float[Array, ""]
    mu_traj: Float[Array, ""]
    lip_g: Float[Array, ""]
    noise_norm: Float[Array, ""]
    norm_A: Float[Array, ""]
    ts: Float[Array, " T"]
    valid: Bool[Array, " T"]
    error: Float[Array, " T"]
    optimisation_term: Float[Array, " T"]
    noise_term: Float[Array, ""]
    expressivity_term: Float[Array, ""]
    bound: Float[Array, " T"]
    early_stopping_time: Float[Array, ""]
    best_time: Float[Array, ""]
    best_error: Float[Array, ""]
    condition: Bool[Array, ""]


def psi_inverse(loss: AbstractLoss, v: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
    """`ψ⁻¹(v)` by bisection in `log s` (`ψ` is increasing); 0 where `v ≤ 0`."""
    v = jnp.asarray(v)
    lo = jnp.full_like(v, -700.0)
    hi = jnp.full_like(v, 700.0)

    def body(_, bracket):
        lo, hi = bracket
        mid = (lo + hi) / 2
        below = loss.psi(jnp.exp(mid)) < v
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    lo, hi = jax.lax.fori_loop(0, 100, body, (lo, hi))
    return jnp.where(v > 0, jnp.exp((lo + hi) / 2), 0)


@checked
def project_onto_reachable(
    objective: Objective,
    target: Float[Array, " n"],
    radius: RealScalarLike,
    *,
    num_iters: int = 3000,
    step_size: RealScalarLike | None = None,
) -> tuple[Float[Array, " n"], Float[Array, " p"]]:
    """A point of `Σ' = {g(u, θ) : ‖θ − θ₀‖ ≤ radius}` near `target`, by projected gradient
    descent on `½‖g(u, θ) − target‖²` from `θ₀` (projection onto the ball).

    **Arguments:**

    - `objective`: gives the generator and `θ₀`.
    - `target`: the signal to approach (e.g. `x̄`).
    - `radius`: the radius of the ball of parameters.
    - `num_iters`: descent steps.
    - `step_size`: the step (default `1/(β² + Lip(J)·‖g₀ − target‖)` from the certificate's
      closed forms or estimates).

    **Returns:** `(x, c)`: the signal and its parameters in isometric coordinates
    (`‖c‖ ≤ radius`). `‖x − target‖` is an upper bound of `dist(target, Σ')` (the problem is
    not convex, so not necessarily the distance).
    """
    check_positive("radius", radius, allow_zero=True)
    check_int("num_iters", num_iters)
    if step_size is not None:
        check_positive("step_size", step_size)
    n = objective.problem.n
    if jnp.shape(target) != (n,):
        raise ValueError(f"target must have shape {(n,)}; got shape {jnp.shape(target)}.")
    if step_size is None:
        step_size = _default_step(objective, certify(objective), target)
    radius = jnp.asarray(radius, objective.dtype)
    return _project(objective, target, radius, num_iters, jnp.asarray(step_size, radius.dtype))


def _default_step(objective, cert, target):
    # 1/Lip of the gradient of ½‖g − x̄‖², bounded by β² + Lip(J)·‖g − x̄‖ while the
    # residual does not grow.
    res0 = jnp.linalg.norm(objective.signal(objective.initial_state()) - target)
    return 1 / (cert.lip_g**2 + cert.lip_J * res0)


@eqx.filter_jit
def _project(objective, target, radius, num_iters, step_size):
    fn = signal_map(objective)
    p = num_coordinates(objective)
    c0 = jnp.zeros((p,), objective.dtype)

    def obj(c):
        r = fn(c) - target
        return 0.5 * jnp.dot(r, r)

    grad = jax.grad(obj)

    def body(_, c):
        c = c - step_size * grad(c)
        nrm = jnp.linalg.norm(c)
        return c * jnp.minimum(1, radius / jnp.maximum(nrm, 1e-300))

    c = jax.lax.fori_loop(0, num_iters, body, c0)
    return fn(c), c


@checked
def recovery(
    objective: Objective,
    trajectory: Trajectory,
    certificate: Certificate | None = None,
    *,
    radius: RealScalarLike | None = None,
    num_iters: int = 3000,
) -> Recovery:
    """The recovery bound of Theorem B against what a run did (docs/theory.md §7.3,
    §10.5).

    **Arguments:**

    - `objective`: the objective the run solved; its problem must know `x̄`.
    - `trajectory`: the run ([`flowdip.solve`][] with `save_params=True`).
    - `certificate`: its [`flowdip.Certificate`][] (computed when not given).
    - `radius`: the radius of `Σ'` (default `R'` for a flow, `R'_GD` for descent; use the
      run's own maximal displacement to ask what the run could reach).
    - `num_iters`: projected-descent steps for `dist(x̄, Σ')`.

    **Returns:** a [`flowdip.Recovery`][].
    """
    problem = objective.problem
    if problem.x_true is None:
        raise ValueError("recovery needs the ground truth x̄: build the problem with x_true.")
    if trajectory.params is None:
        raise ValueError("recovery needs the parameters along the run: solve with save_params.")
    check_int("num_iters", num_iters)
    if radius is not None:
        check_positive("radius", radius, allow_zero=True)
    if certificate is None:
        certificate = certify(objective, trajectory=trajectory)
    descent = trajectory.dynamics.time_per_step is not None
    if radius is None:
        radius = certificate.R_prime_descent if descent else certificate.R_prime
    return _recovery(objective, trajectory, certificate, jnp.asarray(radius), num_iters, descent)


@eqx.filter_jit
def _recovery(objective, traj, cert, radius, num_iters, descent) -> Recovery:
    problem = objective.problem
    x_true = problem.x_true
    dtype = objective.dtype
    # An infinite radius (R' when σ₀ = 0) means no constraint; a huge finite one does too.
    rho = jnp.where(jnp.isfinite(radius), radius, jnp.finfo(dtype).max)
    step = _default_step(objective, cert, x_true)
    x_proj, _ = _project(objective, x_true, rho, num_iters, step)
    dist = jnp.linalg.norm(x_proj - x_true)
    noise = problem.noise if problem.noise is not None else problem.y - problem.forward(x_true)
    noise_norm = jnp.linalg.norm(noise)

    def ratio(x):
        d = x - x_proj
        nd = jnp.linalg.norm(d)
        return jnp.linalg.norm(problem.forward(d)) / jnp.where(nd > 0, nd, 1)

    mu_pair = ratio(traj.final_signal)
    valid = traj.valid
    signals = jax.vmap(lambda c: objective.signal(state_from_coordinates(objective, c)))(
        jnp.where(valid[:, None], traj.params, 0)
    )
    mu_traj = jnp.min(jnp.where(valid, jax.vmap(ratio)(signals), jnp.inf))

    f = cert.constants.sigma_fraction
    c = cert.c_gamma if descent else jnp.ones((), dtype)
    kappa_t = cert.kappa * c
    loss_bound = cert.loss.predicted_loss(cert.loss0, kappa_t, traj.ts)
    lead = cert.lip_g / (f * cert.sigma_A * cert.sigma0 * c)
    optimisation_term = lead * cert.loss.psi(loss_bound)
    noise_term = cert.constants.noise_factor * noise_norm / mu_pair
    expressivity_term = (1 + cert.norm_A / mu_pair) * dist
    bound = optimisation_term + noise_term + expressivity_term
    # t*: the optimisation term equals the noise term (docs/theory.md §7.3).
    target = noise_term / lead
    loss_star = psi_inverse(cert.loss, target)
    gap = cert.loss.rate(loss_star) - cert.loss.rate(cert.loss0)
    t_star = jnp.where(loss_star < cert.loss0, gap / kappa_t, 0)
    err = jnp.where(valid, traj.recovery_error, jnp.inf)
    best = jnp.argmin(err)
    return Recovery(
        radius=jnp.asarray(radius, dtype),
        x_proj=x_proj,
        dist=dist,
        mu_pair=mu_pair,
        mu_traj=mu_traj,
        lip_g=cert.lip_g,
        noise_norm=noise_norm,
        norm_A=cert.norm_A,
        ts=traj.ts,
        valid=valid,
        error=traj.recovery_error,
        optimisation_term=optimisation_term,
        noise_term=noise_term,
        expressivity_term=expressivity_term,
        bound=bound,
        early_stopping_time=t_star,
        best_time=traj.ts[best],
        best_error=err[best],
        condition=cert.condition_descent if descent else cert.condition_flow,
    )
