"""Smooth activations with the constants the two-layer theory needs (docs/theory.md §3.1).

Each activation knows its first and second derivatives in closed form and its constants
`B = sup|φ'|`, `C = sup|φ''|` (closed forms), and the Gaussian moments
`C_φ = E[φ(X)²]^{1/2}`, `C_φ' = E[φ'(X)²]^{1/2}` for `X ~ N(0, 1)` (Gauss–Hermite quadrature),
and its range, which bounds the measurements a two-layer net can reach (docs/theory.md §5.3).
"""

import abc
import functools
import math

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .._typing import Array, Float


@functools.cache
def _hermite_rule(num_points: int) -> tuple[np.ndarray, np.ndarray]:
    # Probabilists' Gauss–Hermite nodes, weights normalised to integrate against N(0, 1).
    nodes, weights = np.polynomial.hermite_e.hermegauss(num_points)
    return nodes, weights / math.sqrt(2.0 * math.pi)


class AbstractActivation(eqx.Module):
    """A twice-differentiable activation `φ` with bounded first and second derivatives.

    Subclasses implement `__call__`, `derivative`, `second_derivative` and the two suprema `B`
    and `C`; the Gaussian moments `C_phi` and `C_phi_prime` come for free.
    """

    @abc.abstractmethod
    def __call__(self, x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        """Evaluates `φ(x)` entrywise."""

    @abc.abstractmethod
    def derivative(self, x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        """Evaluates `φ'(x)` entrywise."""

    @abc.abstractmethod
    def second_derivative(self, x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        """Evaluates `φ''(x)` entrywise."""

    def value_and_derivative(
        self, x: Float[Array, "*shape"]
    ) -> tuple[Float[Array, "*shape"], Float[Array, "*shape"]]:
        """`(φ(x), φ'(x))`; subclasses share work between the two where they can."""
        return self(x), self.derivative(x)

    @property
    @abc.abstractmethod
    def B(self) -> float:
        """`sup |φ'|` over the real line."""

    @property
    @abc.abstractmethod
    def C(self) -> float:
        """`sup |φ''|` over the real line."""

    def gaussian_moment(self, which: str = "phi", num_points: int = 200) -> float:
        """`E[f(X)²]^{1/2}` for `X ~ N(0,1)`, with `f = φ` (`which="phi"`) or `f = φ'`."""
        nodes, weights = _hermite_rule(num_points)
        f = self.__call__ if which == "phi" else self.derivative
        values = np.asarray(f(jnp.asarray(nodes)), dtype=np.float64)
        return float(np.sqrt(np.sum(weights * values**2)))

    @property
    def range(self) -> tuple[float, float] | None:
        """`(lower, upper)`: `φ` takes every value strictly between them and no other (±inf
        where unbounded, the ends not attained); `None` when unknown.

        [`flowdip.reachability`][] needs it; subclasses that know their range override this.
        """
        return None

    @property
    def C_phi(self) -> float:
        """`C_φ = E[φ(X)²]^{1/2}`, `X ~ N(0, 1)` (a second moment, not a variance)."""
        return self.gaussian_moment("phi")

    @property
    def C_phi_prime(self) -> float:
        """`C_φ' = E[φ'(X)²]^{1/2}`, `X ~ N(0, 1)`; `E[J Jᵀ] = C_φ'² I` at initialisation."""
        return self.gaussian_moment("phi_prime")


class Sigmoid(AbstractActivation):
    """The logistic sigmoid `1/(1 + e^{-x})`, the papers' activation: `B = 1/4`, `C = 1/(6√3)`."""

    def __call__(self, x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        """Evaluates `φ(x)` entrywise."""
        return 1 / (1 + jnp.exp(-x))

    def derivative(self, x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        """Evaluates `φ'(x) = φ(x)(1 − φ(x))` entrywise."""
        s = self(x)
        return s * (1 - s)

    def value_and_derivative(
        self, x: Float[Array, "*shape"]
    ) -> tuple[Float[Array, "*shape"], Float[Array, "*shape"]]:
        """`(φ, φ(1 − φ))` from one exponential."""
        s = self(x)
        return s, s * (1 - s)

    def second_derivative(self, x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        """Evaluates `φ''(x) = φ(1 − φ)(1 − 2φ)` entrywise."""
        s = self(x)
        return s * (1 - s) * (1 - 2 * s)

    @property
    def B(self) -> float:
        """`sup |φ'| = 1/4`, attained at 0."""
        return 0.25

    @property
    def C(self) -> float:
        """`sup |φ''| = 1/(6√3)`, attained where `φ = 1/2 ± 1/(2√3)`."""
        return 1 / (6 * math.sqrt(3))

    @property
    def range(self) -> tuple[float, float]:
        """`(0, 1)`."""
        return (0.0, 1.0)


class Tanh(AbstractActivation):
    """The hyperbolic tangent: `B = 1`, `C = 4/(3√3)`."""

    def __call__(self, x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        """Evaluates `φ(x)` entrywise."""
        return jnp.tanh(x)

    def derivative(self, x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        """Evaluates `φ'(x) = 1 − tanh²(x)` entrywise."""
        t = jnp.tanh(x)
        return 1 - t * t

    def second_derivative(self, x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        """Evaluates `φ''(x) = −2 tanh(x)(1 − tanh²(x))` entrywise."""
        t = jnp.tanh(x)
        return -2 * t * (1 - t * t)

    @property
    def B(self) -> float:
        """`sup |φ'| = 1`, attained at 0."""
        return 1.0

    @property
    def C(self) -> float:
        """`sup |φ''| = 4/(3√3)`, attained where `tanh² = 1/3`."""
        return 4 / (3 * math.sqrt(3))

    @property
    def range(self) -> tuple[float, float]:
        """`(−1, 1)`."""
        return (-1.0, 1.0)


class Softplus(AbstractActivation):
    """Softplus `log(1 + eˣ)`: `B = 1` (a supremum, not attained), `C = 1/4`."""

    def __call__(self, x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        """Evaluates `φ(x)` entrywise (overflow-safe)."""
        return jnp.logaddexp(x, 0)

    def derivative(self, x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        """Evaluates `φ'(x) = sigmoid(x)` entrywise."""
        return 1 / (1 + jnp.exp(-x))

    def second_derivative(self, x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        """Evaluates `φ''(x) = sigmoid(x)(1 − sigmoid(x))` entrywise."""
        s = 1 / (1 + jnp.exp(-x))
        return s * (1 - s)

    @property
    def B(self) -> float:
        """`sup |φ'| = 1` (approached as `x → ∞`)."""
        return 1.0

    @property
    def C(self) -> float:
        """`sup |φ''| = 1/4`, attained at 0."""
        return 0.25

    @property
    def range(self) -> tuple[float, float]:
        """`(0, ∞)`."""
        return (0.0, math.inf)
