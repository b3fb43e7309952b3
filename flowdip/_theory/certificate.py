"""Theory certificates: the quantities of the convergence theorems for one concrete instance
(THEORY.md §1–§4, §7), and what a run did against them.

Every number of a [`flowdip.Certificate`][] carries the formula it came from
([`flowdip.Certificate.table`][]). The two-layer DIP uses closed forms; any other generator
uses autodiff with matrix-free eigensolvers, and quantities that are only sampled are labelled
as estimates. The constants that THEORY.md marks as derived or recalled are the fields of
[`flowdip.TheoryConstants`][], with the stated values as defaults.
"""

import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._analysis.compare import fit_rate
from .._generator.networks import TwoLayerDIP
from .._linalg import (
    gram_matvec,
    lanczos_extremes,
    num_coordinates,
    power_norm,
    random_in_ball,
    signal_map,
    state_from_coordinates,
)
from .._losses import AbstractLoss
from .._objective import Objective
from .._problem.problem import operator_times_columns
from .._solve import Trajectory
from .._typing import Array, ArrayLike, Bool, checked, Float, PRNGKeyArray, RealScalarLike


class TheoryConstants(eqx.Module):
    """The constants of the theorems that THEORY.md marks as derived [DER] or recalled [MEM]
    (THEORY.md §8 item 1), exposed so that they can be fixed once the papers are read.

    **Arguments:**

    - `sigma_fraction`: `f` in `σ_min(J_g) ≥ f σ₀` on `B(θ₀, R)` (default ½). It sets
      `R = (1 − f) σ₀ / Lip(J_g)`, `R' = ψ(ℓ₀)/(f σ_A σ₀)` and the rate constant
      `κ = f² σ_A² σ₀²` (the 2, ½ and ¼ of THEORY.md §3.2).
    - `chernoff_delta`: `δ` of the matrix Chernoff bound, `σ₀² ≥ (1 − δ) C_φ'²`
      (default ¾, THEORY.md §3.4 step 1).
    - `chernoff_failure`: the failure probability the Chernoff width is set for (default
      `None`: `1/n`).
    - `step_size_factor`: the default step size is `step_size_factor / L̂` (default 1,
      THEORY.md §4.1, §7.1 item 8).
    - `noise_factor`: the coefficient of `‖ε‖/μ` in the recovery bound (default 1; the paper
      may have 2, THEORY.md §3.3).
    """

    sigma_fraction: float = eqx.field(static=True, default=0.5, converter=float)
    chernoff_delta: float = eqx.field(static=True, default=0.75, converter=float)
    chernoff_failure: float | None = eqx.field(static=True, default=None)
    step_size_factor: float = eqx.field(static=True, default=1.0, converter=float)
    noise_factor: float = eqx.field(static=True, default=1.0, converter=float)

    def __check_init__(self):
        if not 0 < self.sigma_fraction < 1:
            raise ValueError(f"sigma_fraction must lie in (0, 1); got {self.sigma_fraction}.")
        if not 0 < self.chernoff_delta < 1:
            raise ValueError(f"chernoff_delta must lie in (0, 1); got {self.chernoff_delta}.")
        if self.chernoff_failure is not None and not 0 < self.chernoff_failure < 1:
            raise ValueError(
                f"chernoff_failure must lie in (0, 1) or be None; got {self.chernoff_failure}."
            )
        if not (math.isfinite(self.step_size_factor) and 0 < self.step_size_factor < 2):
            raise ValueError(
                f"step_size_factor must lie in (0, 2) (γ < 2/L); got {self.step_size_factor}."
            )
        if not (math.isfinite(self.noise_factor) and self.noise_factor > 0):
            raise ValueError(f"noise_factor must be > 0; got {self.noise_factor}.")


class PathCertificate(eqx.Module):
    """What one run did, held against its certificate (THEORY.md §7.1 items 5–7).

    **Fields:**

    - `ts`, `valid`, `loss`: the run's save times, validity mask and loss (descent: `t = τγ`).
    - `predicted_loss`: the bound `Ψ⁻¹(Γ(t))` at the same times (descent: time `τγc_γ`).
    - `sigma_min`: `σ_min(J_g(θ(t)))` at each save.
    - `displacement`: `‖θ(t) − θ₀‖`; `radius`: `R'` for a flow, `R'_GD = R'/c_γ` for descent.
    - `condition`: whether `radius < R` (the theorem's hypothesis for this dynamics).
    - `path_length`: `Σ‖θ(t_{i+1}) − θ(t_i)‖` over the saves (every step for descent saved at
      every step; a lower bound of the flow's `∫‖θ'‖`).
    - `path_certificate`: `(ψ(ℓ₀) − ψ(ℓ_T))/(σ_A c min_t σ_min(J_g(θ(t))))`, with `c = 1` for
      the flow and `c = 1 − γL/2` for descent, `L` the closed-form bound of THEORY.md §4.3 on
      the ball the run stayed in (THEORY.md §3.2, §4.2). It holds whatever `R'` and `R` are
      (for descent, only with a closed-form `L`: otherwise `L` is the sampled estimate).
    - `step_size`, `c_gamma`: the run's step and that `c` (NaN and 1 for a flow).
    - `observed_rate`: fitted exponential rate of the observed loss (`fit_rate`).
    - `predicted_rate`: the same fit on the predicted bound (`σ_A²σ₀²/2` for the MSE flow).
    - `composite_rate`: `2 λ_min(A J_g J_gᵀ Aᵀ)` at `θ₀`, the rate the composite NTK predicts.
    - `loss_ok`, `displacement_ok`, `sigma_ok`, `path_ok`: the four checks.
    """

    ts: Float[Array, " T"]
    valid: Bool[Array, " T"]
    loss: Float[Array, " T"]
    predicted_loss: Float[Array, " T"]
    sigma_min: Float[Array, " T"]
    displacement: Float[Array, " T"]
    radius: Float[Array, ""]
    condition: Bool[Array, ""]
    path_length: Float[Array, ""]
    path_certificate: Float[Array, ""]
    step_size: Float[Array, ""]
    c_gamma: Float[Array, ""]
    observed_rate: Float[Array, ""]
    predicted_rate: Float[Array, ""]
    composite_rate: Float[Array, ""]
    loss_ok: Bool[Array, ""]
    displacement_ok: Bool[Array, ""]
    sigma_ok: Bool[Array, ""]
    path_ok: Bool[Array, ""]
    sigma_fraction: float = eqx.field(static=True)
    is_descent: bool = eqx.field(static=True)


class Certificate(eqx.Module):
    """The theorems' quantities for one objective (THEORY.md §7.1), from [`flowdip.certify`][].

    Every field is a scalar array, so certificates batch under `jax.vmap`. The formula behind
    each field is in `Certificate.REFERENCES` and printed by [`flowdip.Certificate.table`][];
    `estimates` names the fields that are sampled estimates rather than closed forms or
    bounds.

    **Fields:** `sigma_A`, `norm_A`, `sigma0`, `composite_sigma0`, `lip_J`, `lip_g`, `loss0`,
    `psi0`, `R`, `R_prime`, `R_prime_descent`, `condition_flow`, `condition_descent`,
    `L_bound`, `L_estimate`, `step_size`, `step_size_max`, `c_gamma`, `kappa`, `width`,
    `width_chernoff`, `width_threshold`, `width_threshold_descent`, `width_threshold_apriori`
    (see `REFERENCES`), `loss` (the loss, for the predicted curves), `constants`
    ([`flowdip.TheoryConstants`][]), `path` (a [`flowdip.PathCertificate`][] when a trajectory
    was given, else `None`).
    """

    sigma_A: Float[Array, ""]
    norm_A: Float[Array, ""]
    sigma0: Float[Array, ""]
    composite_sigma0: Float[Array, ""]
    lip_J: Float[Array, ""]
    lip_g: Float[Array, ""]
    loss0: Float[Array, ""]
    psi0: Float[Array, ""]
    R: Float[Array, ""]
    R_prime: Float[Array, ""]
    R_prime_descent: Float[Array, ""]
    condition_flow: Bool[Array, ""]
    condition_descent: Bool[Array, ""]
    L_bound: Float[Array, ""]
    L_estimate: Float[Array, ""]
    step_size: Float[Array, ""]
    step_size_max: Float[Array, ""]
    c_gamma: Float[Array, ""]
    kappa: Float[Array, ""]
    width: Float[Array, ""]
    width_chernoff: Float[Array, ""]
    width_threshold: Float[Array, ""]
    width_threshold_descent: Float[Array, ""]
    width_threshold_apriori: Float[Array, ""]
    loss: AbstractLoss
    constants: TheoryConstants
    path: PathCertificate | None
    estimates: tuple[str, ...] = eqx.field(static=True)

    REFERENCES: ClassVar[dict[str, str]] = {
        "sigma_A": "σ_A = smallest non-zero singular value of A (§1.1, §7.1.1)",
        "norm_A": "‖A‖ = largest singular value of A (§7.1.1)",
        "sigma0": "σ₀ = σ_min(J_g(θ₀)) = λ_min(J Jᵀ)^½; two-layer: (‖u‖²/k) V diag(φ'(z₀)²) Vᵀ "
        "(§1.4, §7.1.2)",
        "composite_sigma0": "λ_min(A J_g J_gᵀ Aᵀ)^½ ≥ σ_A σ₀, the composite NTK (§7.1.2)",
        "lip_J": "Lip(J_g); two-layer: C ‖u‖² min(max_j‖V_j‖, ‖V‖)/√k (§1.4, §7.1.3)",
        "lip_g": "Lip(g) ≥ sup‖J_g‖; two-layer: B ‖u‖ ‖V‖/√k (§3.4 step 7, §7.1.10)",
        "loss0": "ℓ₀ = ℓ_y(A g(u, θ₀))",
        "psi0": "ψ(ℓ₀) (§1.5; MSE: ‖y(0) − y‖)",
        "R": "R = (1 − f) σ₀ / Lip(J_g), f = ½: σ₀/(2 Lip) (§3.2)",
        "R_prime": "R' = ψ(ℓ₀)/(f σ_A σ₀), f = ½: 2ψ(ℓ₀)/(σ_A σ₀) (§3.2)",
        "R_prime_descent": "R'_GD = R'/c_γ (§4.2)",
        "condition_flow": "R' < R (§3.2)",
        "condition_descent": "R'_GD < R and c_γ > 0 (§4.2)",
        "L_bound": "L ≤ ‖u‖²(L_ℓ‖A‖²B²‖V‖²/k + C max_j‖AV_j‖/√k · (‖∇ℓ₀‖ + L_ℓ‖A‖βρ)), "
        "β = B‖u‖‖V‖/√k, ρ = R (§4.3)",
        "L_estimate": "max of ‖∇²F‖ by Hessian-vector power iteration at θ₀ and random points "
        "of B(θ₀, ρ) (§7.1.8)",
        "step_size": "γ = step_size_factor / L̂, L̂ = L_bound (L_estimate without one) "
        "(§4.1, §7.1.8)",
        "step_size_max": "2/L̂: descent is certified for γ < 2/L̂ (§4.1)",
        "c_gamma": "c_γ = 1 − γ L̂/2 (§4.2)",
        "kappa": "κ = f² σ_A² σ₀² = σ_A² σ₀²/4: Γ(t) = Ψ(ℓ₀) + κ t (§1.5, §3.2)",
        "width": "the network's width k (two-layer only)",
        "width_chernoff": "k ≥ B² n D² ln(n/p)/(C_φ'² (δ + (1−δ) ln(1−δ))): σ₀ ≥ (1−δ)^½ C_φ' "
        "with probability ≥ 1 − p, p = 1/n (§3.4 step 1)",
        "width_threshold": "k_thr = (C ‖u‖² max_j‖V_j‖ ψ(ℓ₀) / (f(1−f) σ_A σ₀²))², i.e. "
        "16 C² max_j‖V_j‖² ψ₀²/(σ_A² σ₀⁴): R' < R ⟺ k > k_thr (§3.4)",
        "width_threshold_descent": "k_thr / c_γ² (§3.4, §4.2)",
        "width_threshold_apriori": "C² D² n ψ₀²/(σ_A² f²(1−f)²(1−δ)² C_φ'⁴) = 256 C² D² n ψ₀²/"
        "(σ_A² C_φ'⁴) (§3.4 step 4)",
    }

    def rate_constant(self, descent: bool = False) -> Float[Array, ""]:
        """`κ` for the flow, `κ` per unit of time `τγ` for descent (`κ c_γ`)."""
        return self.kappa * self.c_gamma if descent else self.kappa

    def predicted_loss(self, t: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        """The flow's loss bound `Ψ⁻¹(Ψ(ℓ₀) + κ t)` (THEORY.md §3.2 item 2)."""
        return self.loss.predicted_loss(self.loss0, self.kappa, t)

    def predicted_loss_descent(
        self, steps: Float[ArrayLike, "*shape"] | int, step_size: RealScalarLike | None = None
    ) -> Float[Array, "*shape"]:
        """Descent's loss bound after `τ` steps, `Ψ⁻¹(Ψ(ℓ₀) + τ γ c_γ κ)` (THEORY.md §4.2).

        `step_size` defaults to the certificate's `γ` (then `c_γ` is the certificate's).
        """
        gamma, c = self.step_size, self.c_gamma
        if step_size is not None:
            gamma = jnp.asarray(step_size, self.kappa.dtype)
            c = 1 - gamma * self.lipschitz / 2
        tau = jnp.asarray(steps, self.kappa.dtype)
        bound = self.loss.predicted_loss(self.loss0, self.kappa, tau * gamma * c)
        return jnp.where(c > 0, bound, jnp.nan)

    @property
    def lipschitz(self) -> Float[Array, ""]:
        """`L̂`: the closed-form bound when there is one, else the estimate."""
        return jnp.where(jnp.isfinite(self.L_bound), self.L_bound, self.L_estimate)

    def table(self) -> str:
        """A text table: every quantity, its value, and the formula (THEORY.md section) it came
        from; sampled estimates are marked `(estimate)`. Unbatched certificates only."""
        lines = []
        for name, ref in self.REFERENCES.items():
            value = np.asarray(getattr(self, name))
            text = f"{bool(value)}" if value.dtype == bool else f"{float(value):.6g}"
            kind = " (estimate)" if name in self.estimates else ""
            lines.append(f"{name:>24} = {text:<12}{kind}  {ref}")
        if self.path is not None:
            p = self.path
            lines.append("")
            lines.append(f"run ({'descent' if p.is_descent else 'flow'}):")
            vmin = float(jnp.min(jnp.where(p.valid, p.sigma_min, jnp.inf)))
            dmax = float(jnp.max(jnp.where(p.valid, p.displacement, 0)))
            lines.append(
                f"{'min σ_min(J_g) on the path':>34} = {vmin:.6g} against f σ₀ = "
                f"{p.sigma_fraction * float(self.sigma0):.6g}: {bool(p.sigma_ok)} (§7.1.7)"
            )
            lines.append(
                f"{'max ‖θ − θ₀‖':>34} = {dmax:.6g} against R' = {float(p.radius):.6g}: "
                f"{bool(p.displacement_ok)} (R' < R: {bool(p.condition)}) (§7.1.6)"
            )
            lines.append(f"{'observed loss ≤ predicted bound':>34}: {bool(p.loss_ok)} (§7.1.5)")
            lines.append(
                f"{'path length':>34} = {float(p.path_length):.6g} against the pathwise "
                f"certificate {float(p.path_certificate):.6g}: {bool(p.path_ok)} (§7.1.6)"
            )
            lines.append(
                f"{'observed rate':>34} = {float(p.observed_rate):.6g}; predicted "
                f"{float(p.predicted_rate):.6g}; composite NTK 2λ_min(AJJᵀAᵀ) = "
                f"{float(p.composite_rate):.6g} (§7.1.5)"
            )
        return "\n".join(lines)


_CONSTANTS: dict = {}


def _activation_constants(act) -> tuple[float, float, float]:
    """`(B, C, C_φ')` of an activation, computed once per activation (quadrature)."""
    if act is None:
        return math.nan, math.nan, math.nan
    if act not in _CONSTANTS:
        with jax.ensure_compile_time_eval():
            _CONSTANTS[act] = (act.B, act.C, act.C_phi_prime)
    return _CONSTANTS[act]


def _nan(dtype) -> Array:
    return jnp.full((), jnp.nan, dtype)


def _smallest_nonzero(s: Array) -> Array:
    tol = max(s.shape[0], 1) * jnp.finfo(s.dtype).eps * s[0] * 10
    return jnp.min(jnp.where(s > tol, s, jnp.inf))


def _closed_form_applies(objective: Objective) -> bool:
    g = objective.generator
    return isinstance(g, TwoLayerDIP) and not g.train_V


def _two_layer_sigma(objective: Objective, state) -> Array:
    """`σ_min(J_g(θ))` in closed form (THEORY.md §1.4)."""
    return objective.lift(state).sigma_min_jacobian()


def _generic_sigma(objective: Objective, c: Array, key, iters) -> tuple[Array, Array]:
    """`(σ_min(J_g), ‖J_g‖)` at coordinates `c`, by Lanczos on `J Jᵀ` through jvp∘vjp."""
    fn = signal_map(objective)
    lo, hi = lanczos_extremes(
        gram_matvec(fn, c), objective.problem.n, key, num_iters=iters, dtype=c.dtype
    )
    return jnp.sqrt(lo), jnp.sqrt(jnp.maximum(hi, 0))


def _second_derivative_norm(objective: Objective, c: Array, h: Array, key, iters: int) -> Array:
    """`‖D²g(c)[h, ·]‖` (an `n × p` operator) by power iteration on `M Mᵀ`."""
    fn = signal_map(objective)

    def M(v):
        return jax.jvp(lambda cc: jax.jvp(fn, (cc,), (v,))[1], (c,), (h,))[1]

    Mt = jax.linear_transpose(M, c)

    def mmt(w):
        return M(Mt(w)[0])

    return jnp.sqrt(power_norm(mmt, objective.problem.n, key, num_iters=iters, dtype=c.dtype))


def _hessian_norm(objective: Objective, c: Array, key, iters: int) -> Array:
    """`‖∇²F(θ(c))‖` by power iteration on Hessian-vector products (jvp of grad)."""

    def F(cc):
        return objective.value(state_from_coordinates(objective, cc))

    grad = jax.grad(F)

    def hvp(v):
        return jax.jvp(grad, (c,), (v,))[1]

    return power_norm(hvp, c.shape[0], key, num_iters=iters, dtype=c.dtype)


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
    B, C, C_phi_prime = _activation_constants(act)

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
        sigma0, norm_J0 = _generic_sigma(objective, c0, k_sigma, lanczos_iters)
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
            return _second_derivative_norm(objective, c, h / jnp.linalg.norm(h), kp, power_iters)

        lip0 = second(c0, keys[0])
        R0 = (1 - f) * sigma0 / lip0
        pts = jax.vmap(lambda kk: random_in_ball(kk, p, R0, dtype))(keys[1 : num_samples + 1])
        lips = jax.vmap(second)(pts, keys[num_samples + 1 :])
        lip_J = jnp.maximum(lip0, jnp.max(lips))
        norms = jax.vmap(lambda c, kk: _generic_sigma(objective, c, kk, lanczos_iters)[1])(
            pts, keys[num_samples + 1 :]
        )
        lip_g = jnp.maximum(norm_J0, jnp.max(norms))
        estimates += ["lip_J", "lip_g"]
        width = nan

    R = (1 - f) * sigma0 / lip_J
    R_prime = psi0 / (f * sigma_A * sigma0)
    kappa = f**2 * sigma_A**2 * sigma0**2

    # L: the closed-form bound of §4.3 (two-layer, loss with a Lipschitz gradient), and the
    # Hessian power-iteration estimate at θ₀ and at random points of the ball.
    rho = jnp.where(jnp.isnan(L_radius), R, L_radius)
    rho_finite = jnp.where(jnp.isfinite(rho), rho, 0)
    if closed and loss.gradient_lipschitz_constant is not None:
        L_bound = _two_layer_L_bound(objective, norm_A, rho)
    else:
        L_bound = nan
    if sampled:
        hkeys = jr.split(k_hess, 2 * num_samples + 1)
        pts = jax.vmap(lambda kk: random_in_ball(kk, p, rho_finite, dtype))(hkeys[:num_samples])
        pts = jnp.concatenate([c0[None], pts])
        L_estimate = jnp.max(
            jax.vmap(lambda c, kk: _hessian_norm(objective, c, kk, power_iters))(
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
        sig = jax.vmap(lambda c: _generic_sigma(objective, c, key, iters)[0])(
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
            L_path = _two_layer_L_bound(objective, cert.norm_A, max_disp)
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


def _two_layer_L_bound(objective: Objective, norm_A: Array, rho: Array) -> Array:
    """The closed-form bound of THEORY.md §4.3 on `Lip(∇F)` over `B(θ₀, ρ)` (two-layer net,
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
