"""Theory certificates: the quantities of the convergence theorems for one concrete instance
(docs/theory.md §2–§10), and what a run did against them.

Every number of a [`flowdip.Certificate`][] carries the formula it came from
([`flowdip.plot.certificate_table`][] prints them). The two-layer DIP uses closed forms; any
other generator uses autodiff with matrix-free eigensolvers, and quantities that are only
sampled are labelled as estimates. The constants that docs/theory.md §1.2 marks as derived or
recalled are the fields of [`flowdip.TheoryConstants`][], with the stated values as defaults.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from .._analysis.fits import fit_rate
from .._generator.networks import TwoLayerDIP
from .._linalg import (
    gram_matvec,
    lanczos_extremes,
    num_coordinates,
    random_in_ball,
    signal_map,
    state_from_coordinates,
)
from .._objective import Objective
from .._solve import Trajectory
from .._typing import Array, check_positive, checked, PRNGKeyArray, RealScalarLike
from .bounds import (
    activation_constants,
    generic_sigma,
    hessian_norm,
    second_derivative_norm,
    two_layer_L_bound,
)
from .results import (
    Certificate as Certificate,
    PathCertificate as PathCertificate,
    TheoryConstants as TheoryConstants,
)


def _nan(dtype) -> Array:
    return jnp.full((), jnp.nan, dtype)


def _smallest_nonzero(s: Array) -> Array:
    tol = max(s.shape[0], 1) * jnp.finfo(s.dtype).eps * s[0] * 10
    return jnp.min(jnp.where(s > tol, s, jnp.inf))


def _closed_form_applies(objective: Objective) -> bool:
    g = objective.generator
    return isinstance(g, TwoLayerDIP) and not g.train_V


def _two_layer_sigma(objective: Objective, state) -> Array:
    """`σ_min(J_g(θ))` in closed form (docs/theory.md §3.2)."""
    return objective.lift(state).sigma_min_jacobian()


@checked
def certify(
    objective: Objective,
    step_size: RealScalarLike | None = None,
    *,
    trajectory: Trajectory | None = None,
    constants: TheoryConstants = TheoryConstants(),
    closed_form: bool | None = None,
    key: PRNGKeyArray | None = None,
    num_samples: int = 4,
    power_iters: int = 40,
    lanczos_iters: int | None = None,
    L_radius: RealScalarLike | None = None,
    sampled: bool = True,
) -> Certificate:
    """The theorems' quantities for one objective, and optionally for one run of it.

    **Arguments:**

    - `objective`: the [`flowdip.Objective`][] (its generator's parameters are `θ₀`).
    - `step_size`: the descent step `γ` to certify; default `step_size_factor / L̂`. With a
      descent `trajectory`, its step size is used.
    - `trajectory`: a run of this objective from [`flowdip.solve`][], saved with
      `save_params=True`; adds a [`flowdip.PathCertificate`][] as `Certificate.path`.
    - `constants`: the theorems' constants ([`flowdip.TheoryConstants`][]).
    - `closed_form`: use the two-layer closed forms (default: whenever the generator is a
      [`flowdip.TwoLayerDIP`][] that trains only `W`); `False` forces autodiff.
    - `key`: PRNG key for the sampled estimates and the eigensolvers' starting vectors.
    - `num_samples`: random points of the ball for the sampled estimates (`L_estimate`, and
      `lip_J`, `lip_g` without closed forms).
    - `power_iters`: power iterations per estimate.
    - `lanczos_iters`: Lanczos iterations of the matrix-free eigensolver (default `n`: exact
      up to round-off; fewer give an upper bound of `σ₀`).
    - `L_radius`: the radius `ρ` of the ball on which `L` is bounded (default `R`).
    - `sampled`: compute the sampled estimates; `False` skips `L_estimate` (NaN), for cheap
      batches of two-layer certificates where only the closed forms are wanted.

    **Returns:** a [`flowdip.Certificate`][]. Works under `jax.jit` and `jax.vmap`.
    """
    closed = _closed_form_applies(objective) if closed_form is None else closed_form
    if closed and not _closed_form_applies(objective):
        raise ValueError(
            "closed_form=True needs a TwoLayerDIP that trains only W; got "
            f"{type(objective.generator).__name__}."
        )
    if trajectory is not None and trajectory.params is None:
        raise ValueError(
            "certify(trajectory=…) needs the parameters along the run: solve with "
            "save_params=True (the default)."
        )
    if not sampled and not closed:
        raise ValueError("sampled=False needs the two-layer closed forms (closed_form=True).")
    for name, value in (("num_samples", num_samples), ("power_iters", power_iters)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {name}={value!r}.")
    if step_size is not None:
        check_positive("step_size", step_size)
    if L_radius is not None:
        check_positive("L_radius", L_radius)
    key = jr.key(0) if key is None else key
    descent = trajectory is not None and trajectory.dynamics.time_per_step is not None
    if descent:
        step_size = trajectory.dynamics.step_size
    # NaN stands for "the default step": one compiled program serves every call.
    gamma = jnp.asarray(jnp.nan if step_size is None else step_size, objective.dtype)
    rho = jnp.asarray(jnp.nan if L_radius is None else L_radius, objective.dtype)
    cert = _certify(
        objective,
        gamma,
        constants,
        closed,
        key,
        num_samples,
        power_iters,
        lanczos_iters,
        rho,
        sampled,
    )
    if trajectory is not None:
        path = _path_certificate(objective, cert, trajectory, closed, key, lanczos_iters)
        cert = eqx.tree_at(lambda c: c.path, cert, path, is_leaf=lambda x: x is None)
    return cert


@eqx.filter_jit
def _certify(
    objective,
    step_size,
    constants,
    closed,
    key,
    num_samples,
    power_iters,
    lanczos_iters,
    L_radius,
    sampled,
) -> Certificate:
    f = constants.sigma_fraction
    k_sigma, k_comp, k_lip, k_hess = jr.split(key, 4)
    problem, loss = objective.problem, objective.loss
    dtype = objective.dtype
    nan = _nan(dtype)
    n = problem.n
    A = problem.matrix
    s = jnp.linalg.svd(A, compute_uv=False)
    norm_A, sigma_A = s[0], _smallest_nonzero(s)
    theta0 = objective.initial_state()
    v0 = problem.forward(objective.signal(theta0))
    loss0 = loss(v0, problem.y)
    psi0 = loss.psi(loss0)
    p = num_coordinates(objective)
    c0 = jnp.zeros((p,), dtype)
    estimates: list[str] = []
    act = getattr(objective.generator, "activation", None)
    B, C, C_phi_prime = activation_constants(act)

    if closed:
        net = objective.generator
        V, scale = net.readout()
        u2 = jnp.dot(net.u, net.u)
        gram = net.ntk_gram()
        sigma0 = net.sigma_min_jacobian()
        comp = A @ gram @ A.T
        composite_sigma0 = jnp.sqrt(jnp.maximum(jnp.linalg.eigvalsh(comp)[0], 0))
        col_norms = jnp.linalg.norm(V, axis=0)
        max_col = jnp.max(col_norms)
        norm_V = jnp.linalg.norm(V, 2)
        lip_J = C * u2 * scale * jnp.minimum(max_col, norm_V)
        beta = B * jnp.sqrt(u2) * norm_V * scale
        lip_g = beta
        D = jnp.max(jnp.abs(V))
        width = 1 / scale**2
    else:
        sigma0, norm_J0 = generic_sigma(objective, c0, k_sigma, lanczos_iters)
        fn_A = signal_map(objective)
        comp_lo, _ = lanczos_extremes(
            gram_matvec(lambda c: problem.forward(fn_A(c)), c0),
            problem.m,
            k_comp,
            num_iters=lanczos_iters,
            dtype=dtype,
        )
        composite_sigma0 = jnp.sqrt(comp_lo)
        # Lip(J) and sup‖J‖ on B(θ₀, R) are sampled: first at θ₀ (which fixes a first R),
        # then at random points of that ball, in random directions.
        keys = jr.split(k_lip, 2 * num_samples + 1)

        def second(c, kk):
            kh, kp = jr.split(kk)
            h = jr.normal(kh, (p,), dtype)
            return second_derivative_norm(objective, c, h / jnp.linalg.norm(h), kp, power_iters)

        lip0 = second(c0, keys[0])
        R0 = (1 - f) * sigma0 / lip0
        pts = jax.vmap(lambda kk: random_in_ball(kk, p, R0, dtype))(keys[1 : num_samples + 1])
        lips = jax.vmap(second)(pts, keys[num_samples + 1 :])
        lip_J = jnp.maximum(lip0, jnp.max(lips))
        norms = jax.vmap(lambda c, kk: generic_sigma(objective, c, kk, lanczos_iters)[1])(
            pts, keys[num_samples + 1 :]
        )
        lip_g = jnp.maximum(norm_J0, jnp.max(norms))
        estimates += ["lip_J", "lip_g"]
        width = nan

    R = (1 - f) * sigma0 / lip_J
    R_prime = psi0 / (f * sigma_A * sigma0)
    kappa = f**2 * sigma_A**2 * sigma0**2

    # L: the closed-form bound of §8.3 (two-layer, loss with a Lipschitz gradient), and the
    # Hessian power-iteration estimate at θ₀ and at random points of the ball.
    rho = jnp.where(jnp.isnan(L_radius), R, L_radius)
    rho_finite = jnp.where(jnp.isfinite(rho), rho, 0)
    if closed and loss.gradient_lipschitz_constant is not None:
        L_bound = two_layer_L_bound(objective, norm_A, rho)
    else:
        L_bound = nan
    if sampled:
        hkeys = jr.split(k_hess, 2 * num_samples + 1)
        pts = jax.vmap(lambda kk: random_in_ball(kk, p, rho_finite, dtype))(hkeys[:num_samples])
        pts = jnp.concatenate([c0[None], pts])
        L_estimate = jnp.max(
            jax.vmap(lambda c, kk: hessian_norm(objective, c, kk, power_iters))(
                pts, hkeys[num_samples:]
            )
        )
        estimates.append("L_estimate")
    else:
        L_estimate = nan
    L_hat = jnp.where(jnp.isfinite(L_bound), L_bound, L_estimate)

    gamma = jnp.where(jnp.isnan(step_size), constants.step_size_factor / L_hat, step_size)
    c_gamma = 1 - gamma * L_hat / 2
    admissible = c_gamma > 0
    inf = jnp.full((), jnp.inf, dtype)
    R_prime_descent = jnp.where(admissible, R_prime / jnp.where(admissible, c_gamma, 1), inf)

    if closed:
        with jax.ensure_compile_time_eval():
            fail = constants.chernoff_failure or 1 / n
            dlt = constants.chernoff_delta
            h = dlt + (1 - dlt) * math.log(1 - dlt)
        width_chernoff = B**2 * n * D**2 * math.log(n / fail) / (C_phi_prime**2 * h)
        width_threshold = (C * u2 * max_col * psi0 / (f * (1 - f) * sigma_A * sigma0**2)) ** 2
        width_threshold_descent = jnp.where(
            admissible, width_threshold / jnp.where(admissible, c_gamma, 1) ** 2, inf
        )
        width_threshold_apriori = (
            (C * u2 * D) ** 2
            * n
            * psi0**2
            / (sigma_A**2 * (f * (1 - f) * (1 - dlt)) ** 2 * C_phi_prime**4)
        )
    else:
        width_chernoff = width_threshold = width_threshold_descent = nan
        width_threshold_apriori = nan

    cert = Certificate(
        sigma_A=sigma_A,
        norm_A=norm_A,
        sigma0=sigma0,
        composite_sigma0=composite_sigma0,
        lip_J=lip_J,
        lip_g=lip_g,
        loss0=loss0,
        psi0=psi0,
        R=R,
        R_prime=R_prime,
        R_prime_descent=R_prime_descent,
        condition_flow=R_prime < R,
        condition_descent=admissible & (R_prime_descent < R),
        L_bound=L_bound,
        L_estimate=L_estimate,
        step_size=gamma,
        step_size_max=2 / L_hat,
        c_gamma=c_gamma,
        kappa=kappa,
        width=jnp.asarray(width, dtype),
        width_chernoff=jnp.asarray(width_chernoff, dtype),
        width_threshold=width_threshold,
        width_threshold_descent=width_threshold_descent,
        width_threshold_apriori=jnp.asarray(width_threshold_apriori, dtype),
        loss=loss,
        constants=constants,
        path=None,
        estimates=tuple(estimates),
    )
    return cert


@eqx.filter_jit
def _path_certificate(
    objective: Objective, cert: Certificate, traj: Trajectory, closed: bool, key, iters
) -> PathCertificate:
    f = cert.constants.sigma_fraction
    dtype = objective.dtype
    valid = traj.valid
    states = jax.vmap(lambda c: state_from_coordinates(objective, c))(
        jnp.where(valid[:, None], traj.params, 0)
    )
    if closed:
        sig = jax.vmap(lambda s: _two_layer_sigma(objective, s))(states)
    else:
        sig = jax.vmap(lambda c: generic_sigma(objective, c, key, iters)[0])(
            jnp.where(valid[:, None], traj.params, 0)
        )
    sig = jnp.where(valid, sig, jnp.nan)
    descent = traj.dynamics.time_per_step is not None
    disp = traj.displacement
    max_disp = jnp.max(jnp.where(valid, disp, 0))
    if descent:
        gamma = cert.step_size
        ts_model = traj.ts * cert.c_gamma
        predicted = cert.loss.predicted_loss(cert.loss0, cert.kappa, ts_model)
        predicted = jnp.where(cert.c_gamma > 0, predicted, jnp.inf)
        radius = cert.R_prime_descent
        condition = cert.condition_descent
        # The descent lemma holds with L on any ball holding the whole run: the one of radius
        # max‖θ − θ₀‖ (closed-form bound there), so this c needs no hypothesis on R'.
        L_path = cert.lipschitz
        if closed and cert.loss.gradient_lipschitz_constant is not None:
            L_path = two_layer_L_bound(objective, cert.norm_A, max_disp)
        c_path = 1 - gamma * L_path / 2
    else:
        gamma = _nan(dtype)
        predicted = cert.predicted_loss(traj.ts)
        radius = cert.R_prime
        condition = cert.condition_flow
        c_path = jnp.ones((), dtype)
    steps = jnp.diff(traj.params, axis=0)
    both = valid[1:] & valid[:-1]
    path_length = jnp.sum(jnp.where(both, jnp.linalg.norm(steps, axis=1), 0))
    last = jnp.maximum(jnp.sum(valid) - 1, 0)
    psi_T = cert.loss.psi(jnp.maximum(traj.loss[last], 0))
    s_min = jnp.min(jnp.where(valid, sig, jnp.inf))
    denom = cert.sigma_A * c_path * s_min
    path_certificate = jnp.where(
        denom > 0, (cert.psi0 - psi_T) / jnp.where(denom > 0, denom, 1), jnp.inf
    )
    # Relative 1e-6 for round-off, absolute 1e-8·ℓ₀ for the ODE solver's resolution (a
    # finite-time bound reaches exactly 0, which an integrated flow only approaches).
    loss_ok = jnp.all(~valid | (traj.loss <= predicted * (1 + 1e-6) + 1e-8 * cert.loss0))
    eps = 1e-9 * (1 + max_disp)
    ts_rate = traj.ts
    observed_rate = fit_rate(ts_rate, traj.loss, valid)
    predicted_rate = fit_rate(ts_rate, predicted, valid & jnp.isfinite(predicted))
    return PathCertificate(
        ts=traj.ts,
        valid=valid,
        loss=traj.loss,
        predicted_loss=predicted,
        sigma_min=sig,
        displacement=disp,
        radius=radius,
        condition=condition,
        path_length=path_length,
        path_certificate=path_certificate,
        step_size=jnp.asarray(gamma, dtype),
        c_gamma=jnp.asarray(c_path, dtype),
        observed_rate=observed_rate,
        predicted_rate=predicted_rate,
        composite_rate=2 * cert.composite_sigma0**2,
        loss_ok=loss_ok,
        displacement_ok=max_disp <= radius + eps,
        sigma_ok=s_min >= f * cert.sigma0 * (1 - 1e-9),
        path_ok=path_length <= path_certificate * (1 + 1e-9) + 1e-12,
        sigma_fraction=f,
        is_descent=descent,
    )
