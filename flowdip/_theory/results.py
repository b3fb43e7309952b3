"""What a certificate holds: the theorems' constants, the quantities for one objective, and
what one run did against them. [`flowdip.certify`][] computes them."""

import math
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp

from .._losses import AbstractLoss
from .._typing import Array, ArrayLike, Bool, Float, RealScalarLike


class TheoryConstants(eqx.Module):
    """The constants of the theorems that docs/theory.md §1.2 marks as derived or recalled
    (docs/theory.md §13 item 1), exposed so that they can be fixed once the papers are read.

    **Arguments:**

    - `sigma_fraction`: `f` in `σ_min(J_g) ≥ f σ₀` on `B(θ₀, R)` (default ½). It sets
      `R = (1 − f) σ₀ / Lip(J_g)`, `R' = ψ(ℓ₀)/(f σ_A σ₀)` and the rate constant
      `κ = f² σ_A² σ₀²` (the 2, ½ and ¼ of docs/theory.md §7.2).
    - `chernoff_delta`: `δ` of the matrix Chernoff bound, `σ₀² ≥ (1 − δ) C_φ'²`
      (default ¾, docs/theory.md §7.4 step 1).
    - `chernoff_failure`: the failure probability the Chernoff width is set for (default
      `None`: `1/n`).
    - `step_size_factor`: the default step size is `step_size_factor / L̂` (default 1,
      docs/theory.md §8.1, §10.3).
    - `noise_factor`: the coefficient of `‖ε‖/μ` in the recovery bound (default 1; the paper
      may have 2, docs/theory.md §7.3).
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
    """What one run did, held against its certificate (docs/theory.md §10.4).

    **Fields:**

    - `ts`, `valid`, `loss`: the run's save times, validity mask and loss (descent: `t = τγ`).
    - `predicted_loss`: the bound `Ψ⁻¹(Γ(t))` at the same times (descent: time `τγc_γ`).
    - `sigma_min`: `σ_min(J_g(θ(t)))` at each save.
    - `displacement`: `‖θ(t) − θ₀‖`; `radius`: `R'` for a flow, `R'_GD = R'/c_γ` for descent.
    - `condition`: whether `radius < R` (the theorem's hypothesis for this dynamics).
    - `path_length`: `Σ‖θ(t_{i+1}) − θ(t_i)‖` over the saves (every step for descent saved at
      every step; a lower bound of the flow's `∫‖θ'‖`).
    - `path_certificate`: `(ψ(ℓ₀) − ψ(ℓ_T))/(σ_A c min_t σ_min(J_g(θ(t))))`, with `c = 1` for
      the flow and `c = 1 − γL/2` for descent, `L` the closed-form bound of docs/theory.md §8.3 on
      the ball the run stayed in (docs/theory.md §7.2, §8.2). It holds whatever `R'` and `R` are
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
    """The theorems' quantities for one objective (docs/theory.md §10), from [`flowdip.certify`][].

    Every field is a scalar array, so certificates batch under `jax.vmap`. The formula behind
    each field is in `Certificate.REFERENCES` (with section numbers of docs/theory.md) and
    printed by [`flowdip.plot.certificate_table`][];
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
        "sigma_A": "σ_A = smallest non-zero singular value of A (§2.1, §10.1)",
        "norm_A": "‖A‖ = largest singular value of A (§10.1)",
        "sigma0": "σ₀ = σ_min(J_g(θ₀)) = λ_min(J Jᵀ)^½; two-layer: (‖u‖²/k) V diag(φ'(z₀)²) Vᵀ "
        "(§3.2, §10.1)",
        "composite_sigma0": "λ_min(A J_g J_gᵀ Aᵀ)^½ ≥ σ_A σ₀, the composite NTK (§10.1)",
        "lip_J": "Lip(J_g); two-layer: C ‖u‖² min(max_j‖V_j‖, ‖V‖)/√k (§3.2, §10.1)",
        "lip_g": "Lip(g) ≥ sup‖J_g‖; two-layer: B ‖u‖ ‖V‖/√k (§7.4 step 7, §10.5)",
        "loss0": "ℓ₀ = ℓ_y(A g(u, θ₀))",
        "psi0": "ψ(ℓ₀) (§4.4; MSE: ‖y(0) − y‖)",
        "R": "R = (1 − f) σ₀ / Lip(J_g), f = ½: σ₀/(2 Lip) (§7.2)",
        "R_prime": "R' = ψ(ℓ₀)/(f σ_A σ₀), f = ½: 2ψ(ℓ₀)/(σ_A σ₀) (§7.2)",
        "R_prime_descent": "R'_GD = R'/c_γ (§8.2)",
        "condition_flow": "R' < R (§7.2)",
        "condition_descent": "R'_GD < R and c_γ > 0 (§8.2)",
        "L_bound": "L ≤ ‖u‖²(L_ℓ‖A‖²B²‖V‖²/k + C max_j‖AV_j‖/√k · (‖∇ℓ₀‖ + L_ℓ‖A‖βρ)), "
        "β = B‖u‖‖V‖/√k, ρ = R (§8.3)",
        "L_estimate": "max of ‖∇²F‖ by Hessian-vector power iteration at θ₀ and random points "
        "of B(θ₀, ρ) (§10.3)",
        "step_size": "γ = step_size_factor / L̂, L̂ = L_bound (L_estimate without one) (§8.1, §10.3)",
        "step_size_max": "2/L̂: descent is certified for γ < 2/L̂ (§8.1)",
        "c_gamma": "c_γ = 1 − γ L̂/2 (§8.2)",
        "kappa": "κ = f² σ_A² σ₀² = σ_A² σ₀²/4: Γ(t) = Ψ(ℓ₀) + κ t (§4.2, §7.2)",
        "width": "the network's width k (two-layer only)",
        "width_chernoff": "k ≥ B² n D² ln(n/p)/(C_φ'² (δ + (1−δ) ln(1−δ))): σ₀ ≥ (1−δ)^½ C_φ' "
        "with probability ≥ 1 − p, p = 1/n (§7.4 step 1)",
        "width_threshold": "k_thr = (C ‖u‖² max_j‖V_j‖ ψ(ℓ₀) / (f(1−f) σ_A σ₀²))², i.e. "
        "16 C² max_j‖V_j‖² ψ₀²/(σ_A² σ₀⁴): R' < R ⟺ k > k_thr (§7.4)",
        "width_threshold_descent": "k_thr / c_γ² (§7.4, §8.2)",
        "width_threshold_apriori": "C² D² n ψ₀²/(σ_A² f²(1−f)²(1−δ)² C_φ'⁴) = 256 C² D² n ψ₀²/"
        "(σ_A² C_φ'⁴) (§7.4 step 4)",
    }

    def rate_constant(self, descent: bool = False) -> Float[Array, ""]:
        """`κ` for the flow, `κ` per unit of time `τγ` for descent (`κ c_γ`)."""
        return self.kappa * self.c_gamma if descent else self.kappa

    def predicted_loss(self, t: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        """The flow's loss bound `Ψ⁻¹(Ψ(ℓ₀) + κ t)` (docs/theory.md §7.2 item 2)."""
        return self.loss.predicted_loss(self.loss0, self.kappa, t)

    def predicted_loss_descent(
        self, steps: Float[ArrayLike, "*shape"] | int, step_size: RealScalarLike | None = None
    ) -> Float[Array, "*shape"]:
        """Descent's loss bound after `τ` steps, `Ψ⁻¹(Ψ(ℓ₀) + τ γ c_γ κ)` (docs/theory.md §8.2).

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
