"""Loss families with the Kurdyka–Łojasiewicz (KL) property (docs/theory.md §4).

Every loss `ℓ_y(v)` here has minimum 0 at `v = y` and satisfies the KL inequality
`ψ'(ℓ_y(v)) · ‖∇ℓ_y(v)‖ ≥ 1` with its desingularising function `ψ`. The rate function `Ψ` is a
primitive of `−ψ'²`; the flow's loss obeys `ℓ(t) ≤ Ψ⁻¹(Ψ(ℓ(0)) + κ t)` with
`κ = σ_A² σ₀²/4`, which [`flowdip.AbstractLoss.predicted_loss`][] evaluates.
"""

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._typing import Array, ArrayLike, check_real, Float, RealScalarLike


def _dtype_bounds(dtype) -> tuple[float, float]:
    info = jnp.finfo(dtype)
    return math.log(float(info.tiny)) + 1.0, math.log(float(info.max)) - 1.0


@jax.jit
def _gauss_legendre_panels(a, b):
    # Composite 8-point Gauss–Legendre nodes/weights for ∫_a^b on 64 equal panels (vectorised).
    x, w = np.polynomial.legendre.leggauss(8)
    edges = jnp.linspace(0.0, 1.0, 65, dtype=jnp.result_type(a))
    lo, hi = edges[:-1], edges[1:]
    t = (lo[:, None] + hi[:, None]) / 2 + (hi - lo)[:, None] / 2 * x[None, :]
    wt = (hi - lo)[:, None] / 2 * w[None, :]
    shape = (1,) * jnp.ndim(a) + (-1,)
    nodes = a[..., None] + (b - a)[..., None] * t.reshape(shape)
    return nodes, (b - a)[..., None] * wt.reshape(shape)


class AbstractLoss(eqx.Module):
    """A data-fit loss `ℓ_y(v) ≥ 0`, zero exactly at `v = y`, with the KL property.

    Subclasses implement `__call__`, `gradient` and `psi`; `psi_prime`, `rate` and
    `rate_inverse` default to autodiff, quadrature and bisection and are overridden by closed
    forms where they exist.
    """

    @abc.abstractmethod
    def __call__(self, v: Float[Array, " m"], y: Float[Array, " m"]) -> Float[Array, ""]:
        """The loss `ℓ_y(v)`."""

    @abc.abstractmethod
    def gradient(self, v: Float[Array, " m"], y: Float[Array, " m"]) -> Float[Array, " m"]:
        """`∇ℓ_y(v)` (closed form; `jax.grad` of `__call__` gives the same)."""

    @abc.abstractmethod
    def psi(self, s: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        """The desingularising function `ψ` (concave, `ψ(0) = 0`, `ψ' > 0`)."""

    @property
    def kl_eta(self) -> float:
        """The KL inequality holds on `0 < ℓ < kl_eta` (`inf`: everywhere)."""
        return math.inf

    @property
    def gradient_lipschitz_constant(self) -> float | None:
        """Global Lipschitz constant `L_ℓ` of `∇ℓ_y`, or `None` when there is none."""
        return None

    @property
    def gradient_lipschitz(self) -> bool:
        """Whether `∇ℓ_y` is globally Lipschitz (gradient descent needs it, docs/theory.md §8)."""
        return self.gradient_lipschitz_constant is not None

    def psi_prime(self, s: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        """`ψ'(s)`, by autodiff unless a subclass gives the closed form."""
        s = jnp.asarray(s, dtype=jnp.result_type(s, float))
        return jnp.vectorize(jax.grad(lambda x: self.psi(x)))(s)

    def rate(self, s: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        """`Ψ(s) = ∫_s^1 ψ'(t)² dt`: a decreasing primitive of `−ψ'²` (normalised by `Ψ(1) = 0`).

        Computed by composite Gauss–Legendre quadrature in `log t` unless a subclass gives the
        closed form. Only differences of `Ψ` carry meaning.
        """
        s = jnp.asarray(s, dtype=jnp.result_type(s, float))
        w, wt = _gauss_legendre_panels(jnp.log(s), jnp.zeros_like(s))
        t = jnp.exp(w)
        return jnp.sum(wt * self.psi_prime(t) ** 2 * t, axis=-1)

    @property
    def rate_at_zero(self) -> float:
        """`Ψ(0⁺) = sup Ψ`: finite when the loss reaches zero in finite time."""
        return math.inf

    def rate_inverse(self, g: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        """`Ψ⁻¹(g)`, by bisection in `log s` unless a subclass gives the closed form.

        Returns 0 where `g ≥ Ψ(0⁺)` (the loss has reached zero).
        """
        g = jnp.asarray(g, dtype=jnp.result_type(g, float))
        lo_b, hi_b = _dtype_bounds(g.dtype)

        def body(_, bracket):
            lo, hi = bracket
            mid = (lo + hi) / 2
            # Ψ is decreasing: Ψ(e^mid) > g means the answer lies above mid.
            above = self.rate(jnp.exp(mid)) > g
            return jnp.where(above, mid, lo), jnp.where(above, hi, mid)

        lo = jnp.full_like(g, lo_b)
        hi = jnp.full_like(g, hi_b)
        lo, hi = jax.lax.fori_loop(0, 80, body, (lo, hi))
        s = jnp.exp((lo + hi) / 2)
        return jnp.where(g >= self.rate_at_zero, jnp.zeros_like(s), s)

    def predicted_loss(
        self, loss0: RealScalarLike, kappa: RealScalarLike, t: Float[ArrayLike, "*shape"]
    ) -> Float[Array, "*shape"]:
        """The KL bound `Ψ⁻¹(Ψ(ℓ₀) + κ t)` on the loss at time `t` (docs/theory.md §4).

        **Arguments:**

        - `loss0`: the initial loss `ℓ(0)`.
        - `kappa`: the rate constant, `σ_A² σ₀²/4` for the gradient flow.
        - `t`: times (for gradient descent use `τ γ c_γ`).
        """
        t = jnp.asarray(t, dtype=jnp.result_type(t, float))
        return self.rate_inverse(self.rate(jnp.asarray(loss0, t.dtype)) + kappa * t)


class MSE(AbstractLoss):
    """`ℓ_y(v) = ½‖v − y‖²`: `ψ(s) = √(2s)`, exponential rate, `∇ℓ` 1-Lipschitz."""

    def __call__(self, v: Float[Array, " m"], y: Float[Array, " m"]) -> Float[Array, ""]:
        """`½‖v − y‖²`."""
        r = v - y
        return 0.5 * jnp.dot(r, r)

    def gradient(self, v: Float[Array, " m"], y: Float[Array, " m"]) -> Float[Array, " m"]:
        """`v − y`."""
        return v - y

    def psi(self, s: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        """`ψ(s) = √(2s)`."""
        return jnp.sqrt(2 * jnp.asarray(s, dtype=jnp.result_type(s, float)))

    def psi_prime(self, s: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        """`ψ'(s) = 1/√(2s)`."""
        return 1 / self.psi(s)

    def rate(self, s: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        """`Ψ(s) = −½ ln s`."""
        return -0.5 * jnp.log(jnp.asarray(s, dtype=jnp.result_type(s, float)))

    def rate_inverse(self, g: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        """`Ψ⁻¹(g) = e^{−2g}`."""
        return jnp.exp(-2 * jnp.asarray(g, dtype=jnp.result_type(g, float)))

    @property
    def gradient_lipschitz_constant(self) -> float | None:
        """`L_ℓ = 1`."""
        return 1.0


class PowerLoss(AbstractLoss):
    """`ℓ_y(v) = (1/p)‖v − y‖₂^p`, `p > 1`: `ψ(s) = p^{1/p} s^{1/p}` (Łojasiewicz, α = 1/p).

    `p < 2` reaches zero in finite time, `p = 2` is the MSE (exponential), `p > 2` decays
    sublinearly as `O(t^{−p/(p−2)})`. The gradient is globally Lipschitz only for `p = 2`
    (locally for `p > 2`, not at all for `p < 2`).
    """

    p: float = eqx.field(static=True, converter=lambda p: check_real("p", p))

    def __check_init__(self):
        if not (math.isfinite(self.p) and self.p > 1):
            raise ValueError(f"PowerLoss needs p > 1; got p={self.p}.")

    def __call__(self, v: Float[Array, " m"], y: Float[Array, " m"]) -> Float[Array, ""]:
        """`(1/p)‖v − y‖^p`."""
        r = v - y
        sq = jnp.dot(r, r)
        safe = jnp.where(sq > 0, sq, 1)
        return jnp.where(sq > 0, safe ** (self.p / 2) / self.p, 0)

    def gradient(self, v: Float[Array, " m"], y: Float[Array, " m"]) -> Float[Array, " m"]:
        """`‖r‖^{p−2} r` with `r = v − y` (zero at `r = 0`)."""
        r = v - y
        sq = jnp.dot(r, r)
        safe = jnp.where(sq > 0, sq, 1)
        return jnp.where(sq > 0, safe ** ((self.p - 2) / 2), 0) * r

    @property
    def _c2a2(self) -> float:
        return (self.p ** (1 / self.p)) ** 2 / self.p**2

    def psi(self, s: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        """`ψ(s) = p^{1/p} s^{1/p}`."""
        s = jnp.asarray(s, dtype=jnp.result_type(s, float))
        return self.p ** (1 / self.p) * s ** (1 / self.p)

    def psi_prime(self, s: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        """`ψ'(s) = p^{1/p} (1/p) s^{1/p − 1}`."""
        s = jnp.asarray(s, dtype=jnp.result_type(s, float))
        return self.p ** (1 / self.p) / self.p * s ** (1 / self.p - 1)

    def rate(self, s: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        """`Ψ(s) = −c²α² s^e/e` with `e = 2/p − 1` (`−½ ln s` at `p = 2`)."""
        s = jnp.asarray(s, dtype=jnp.result_type(s, float))
        e = 2 / self.p - 1
        if self.p == 2:
            return -self._c2a2 * jnp.log(s)
        return -self._c2a2 * s**e / e

    def rate_inverse(self, g: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        """Closed-form `Ψ⁻¹`; 0 once `g ≥ Ψ(0⁺) = 0` for `p < 2` (finite-time extinction)."""
        g = jnp.asarray(g, dtype=jnp.result_type(g, float))
        if self.p == 2:
            return jnp.exp(-g / self._c2a2)
        e = 2 / self.p - 1
        base = -e * g / self._c2a2
        safe = jnp.where(base > 0, base, 1)
        return jnp.where(base > 0, safe ** (1 / e), 0 if e > 0 else jnp.inf)

    @property
    def rate_at_zero(self) -> float:
        """`Ψ(0⁺)`: 0 for `p < 2` (finite time), `inf` otherwise."""
        return 0.0 if self.p < 2 else math.inf

    @property
    def gradient_lipschitz_constant(self) -> float | None:
        """1 for `p = 2`; `None` otherwise (only locally Lipschitz for `p > 2`)."""
        return 1.0 if self.p == 2 else None


class Huber(AbstractLoss):
    """Huber loss `Σ h_δ(r_i)`, quadratic for `|r_i| ≤ δ` and linear beyond.

    `ψ(s) = √(2s)` for `s ≤ δ²/2` and `δ + (s − δ²/2)/δ` beyond: the loss first decreases
    linearly, then exponentially. `∇ℓ` is 1-Lipschitz.
    """

    delta: float = eqx.field(static=True, converter=lambda delta: check_real("delta", delta))

    def __check_init__(self):
        if not (math.isfinite(self.delta) and self.delta > 0):
            raise ValueError(f"Huber needs delta > 0; got delta={self.delta}.")

    def __call__(self, v: Float[Array, " m"], y: Float[Array, " m"]) -> Float[Array, ""]:
        """`Σ h_δ(v_i − y_i)`."""
        a = jnp.abs(v - y)
        d = self.delta
        return jnp.sum(jnp.where(a <= d, 0.5 * a * a, d * (a - 0.5 * d)))

    def gradient(self, v: Float[Array, " m"], y: Float[Array, " m"]) -> Float[Array, " m"]:
        """`clip(v − y, −δ, δ)`."""
        return jnp.clip(v - y, -self.delta, self.delta)

    def psi(self, s: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        """`√(2s)` below `δ²/2`, affine `δ + (s − δ²/2)/δ` above."""
        s = jnp.asarray(s, dtype=jnp.result_type(s, float))
        d = self.delta
        return jnp.where(s <= d * d / 2, jnp.sqrt(2 * s), d + (s - d * d / 2) / d)

    def psi_prime(self, s: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        """`max(1/δ, 1/√(2s))`."""
        s = jnp.asarray(s, dtype=jnp.result_type(s, float))
        return jnp.maximum(1 / self.delta, 1 / jnp.sqrt(2 * s))

    def rate(self, s: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        """`−½ ln s` below `δ²/2`, continued linearly with slope `−1/δ²` above."""
        s = jnp.asarray(s, dtype=jnp.result_type(s, float))
        b = self.delta**2 / 2
        return jnp.where(s <= b, -0.5 * jnp.log(s), -0.5 * math.log(b) - (s - b) / self.delta**2)

    def rate_inverse(self, g: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        """Closed-form inverse of the two branches of `Ψ`."""
        g = jnp.asarray(g, dtype=jnp.result_type(g, float))
        b = self.delta**2 / 2
        gb = -0.5 * math.log(b)
        return jnp.where(g >= gb, jnp.exp(-2 * g), b + self.delta**2 * (gb - g))

    @property
    def gradient_lipschitz_constant(self) -> float | None:
        """`L_ℓ = 1`."""
        return 1.0


class PseudoHuber(AbstractLoss):
    """Pseudo-Huber loss `Σ δ²(√(1 + r_i²/δ²) − 1)`: MSE-like near 0, linear far out.

    `ψ(s) = √(s(2 + s/δ²))` (closed form), `Ψ(s) = −s/δ² − ½ ln s + ½ ln(2 + s/δ²)`;
    `Ψ⁻¹` by bisection. `∇ℓ` is 1-Lipschitz.
    """

    delta: float = eqx.field(static=True, converter=lambda delta: check_real("delta", delta))

    def __check_init__(self):
        if not (math.isfinite(self.delta) and self.delta > 0):
            raise ValueError(f"PseudoHuber needs delta > 0; got delta={self.delta}.")

    def __call__(self, v: Float[Array, " m"], y: Float[Array, " m"]) -> Float[Array, ""]:
        """`Σ δ²(√(1 + r_i²/δ²) − 1)`, computed as `Σ r_i²/(√(1 + r_i²/δ²) + 1)`."""
        r = v - y
        q = jnp.sqrt(1 + (r / self.delta) ** 2)
        return jnp.sum(r * r / (q + 1))

    def gradient(self, v: Float[Array, " m"], y: Float[Array, " m"]) -> Float[Array, " m"]:
        """`r_i/√(1 + r_i²/δ²)`."""
        r = v - y
        return r / jnp.sqrt(1 + (r / self.delta) ** 2)

    def psi(self, s: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        """`ψ(s) = √(s(2 + s/δ²))`."""
        s = jnp.asarray(s, dtype=jnp.result_type(s, float))
        return jnp.sqrt(s * (2 + s / self.delta**2))

    def psi_prime(self, s: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        """`ψ'(s) = (1 + s/δ²)/√(s(2 + s/δ²))`."""
        s = jnp.asarray(s, dtype=jnp.result_type(s, float))
        return (1 + s / self.delta**2) / self.psi(s)

    def rate(self, s: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        """`Ψ(s) = −s/δ² − ½ ln s + ½ ln(2 + s/δ²)` (closed form)."""
        s = jnp.asarray(s, dtype=jnp.result_type(s, float))
        a = 1 / self.delta**2
        return -a * s - 0.5 * jnp.log(s) + 0.5 * jnp.log(2 + a * s)

    @property
    def gradient_lipschitz_constant(self) -> float | None:
        """`L_ℓ = 1` (the second derivative `(1 + r²/δ²)^{−3/2}` is at most 1)."""
        return 1.0
