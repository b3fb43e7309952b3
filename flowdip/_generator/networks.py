"""Generators `g(u, θ)`: the papers' two-layer DIP and a deeper MLP, as Equinox modules."""

import abc
import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jax.scipy.linalg import eigh_tridiagonal

from .._typing import Array, ArrayLike, check_int, checked, Float, Int, PRNGKeyArray, PyTree, Size
from .activations import AbstractActivation, Sigmoid, Tanh


def positive_int(name: str, value) -> int:
    """`value` as an int, raising unless it is an integer `>= 1` (NumPy integers included)."""
    return check_int(name, value, 1)


def check_activation(name: str, value) -> None:
    """Raises `TypeError` unless `value` is an activation instance (not a name, a class or a
    plain function, which would fail later and far from the cause)."""
    if not isinstance(value, AbstractActivation):
        raise TypeError(
            f"{name} must be an activation such as flowdip.Sigmoid(); got {name}={value!r}."
        )


def _default_dtype(dtype):
    return jnp.result_type(float) if dtype is None else dtype


def uniform_on_sphere(key: PRNGKeyArray, d: Size, dtype=None) -> Float[Array, " d"]:
    """A point drawn uniformly on the unit sphere of `ℝᵈ` (assumption A-1)."""
    d = positive_int("d", d)
    u = jr.normal(key, (d,), _default_dtype(dtype))
    return u / jnp.linalg.norm(u)


V_LAWS = ("rademacher", "gaussian", "uniform")


def sample_V(key: PRNGKeyArray, n: Size, k: Size, law: str = "rademacher", dtype=None):
    """Second-layer weights with i.i.d. centred unit-variance entries (assumption A-3).

    `law` is `"rademacher"` (±1, bound D = 1), `"gaussian"` (N(0, 1), unbounded) or
    `"uniform"` (U(−√3, √3), bound D = √3). Column `j` is drawn from `fold_in(key, j)`, so the
    first `k` columns do not depend on how many are drawn (padded widths reproduce unpadded
    runs).
    """
    n, k = positive_int("n", n), positive_int("k", k)
    dtype = _default_dtype(dtype)
    if law not in V_LAWS:
        raise ValueError(f"law must be one of {V_LAWS}; got {law!r}.")

    def column(j):
        kj = jr.fold_in(key, j)
        if law == "rademacher":
            return jr.rademacher(kj, (n,), dtype=dtype)
        if law == "gaussian":
            return jr.normal(kj, (n,), dtype)
        s = math.sqrt(3.0)
        return jr.uniform(kj, (n,), dtype, minval=-s, maxval=s)

    return jax.vmap(column, out_axes=1)(jnp.arange(k))


def sample_W(key: PRNGKeyArray, k: Size, d: Size, dtype=None) -> Float[Array, "k d"]:
    """First-layer weights with i.i.d. N(0, 1) entries (assumption A-2), row `j` drawn from
    `fold_in(key, j)` (see [`flowdip.sample_V`][])."""
    k, d = positive_int("k", k), positive_int("d", d)
    dtype = _default_dtype(dtype)
    return jax.vmap(lambda j: jr.normal(jr.fold_in(key, j), (d,), dtype))(jnp.arange(k))


class AbstractGenerator(eqx.Module):
    """A generator `x = g(u, θ)` with a fixed input `u` stored inside the module.

    Subclasses implement `__call__` (the signal) and `trainable_filter` (a pytree of bools, the
    same structure as the module, marking the parameters `θ` that the dynamics move; everything
    else is frozen).
    """

    @abc.abstractmethod
    def __call__(self) -> Float[Array, " n"]:
        """The generated signal `g(u, θ)`."""

    @abc.abstractmethod
    def trainable_filter(self) -> PyTree[bool]:
        """Filter spec for `eqx.partition`: `True` on the trained leaves."""

    def partition(self) -> tuple[PyTree, PyTree]:
        """Splits the module into `(trainable, frozen)` with `eqx.partition`."""
        return eqx.partition(self, self.trainable_filter())


class TwoLayerDIP(AbstractGenerator):
    """The two-layer DIP of P1–P3: `g(u, W) = V φ(W u)/√k` (docs/theory.md §3.1).

    **Fields:**

    - `u`: fixed input, shape `(d,)`.
    - `W`: first layer, shape `(k, d)`; trained.
    - `V`: second layer, shape `(n, k)`; frozen unless `train_V=True`.
    - `activation`: the activation `φ`.
    - `train_V`: also train `V` (the papers keep it fixed).
    - `mask`: optional 0/1 weights of shape `(k,)` that switch neurons off: the net is then
      the one of width `k_eff = Σ mask` (the `1/√k` uses `k_eff`), and masked neurons get zero
      gradient. Sweeps pad widths this way.
    """

    u: Float[Array, " d"]
    W: Float[Array, "k d"]
    V: Float[Array, "n k"]
    activation: AbstractActivation = Sigmoid()
    train_V: bool = eqx.field(static=True, default=False)
    mask: Float[Array, " k"] | None = None

    def __check_init__(self):
        check_activation("activation", self.activation)
        if self.W.ndim != 2 or self.u.ndim != 1 or self.V.ndim != 2:
            raise ValueError(
                f"Expected u of shape (d,), W of shape (k, d) and V of shape (n, k); got "
                f"u {self.u.shape}, W {self.W.shape}, V {self.V.shape}."
            )
        k, d = self.W.shape
        if k < 1:
            raise ValueError(f"The width k must be >= 1; W has shape {self.W.shape}.")
        if self.u.shape != (d,):
            raise ValueError(
                f"u has shape {self.u.shape} but W has shape {self.W.shape}: u "
                f"must have shape {(d,)}."
            )
        if self.V.shape[1] != k:
            raise ValueError(
                f"V has shape {self.V.shape} but W has shape {self.W.shape}: V "
                f"must have {k} columns."
            )

    @classmethod
    def init(
        cls,
        key: PRNGKeyArray,
        *,
        d: Size,
        k: Size,
        n: Size,
        activation: AbstractActivation = Sigmoid(),
        v_law: str = "rademacher",
        train_V: bool = False,
        dtype=None,
    ) -> "TwoLayerDIP":
        """The papers' initialisation A-1…A-3.

        `u` uniform on the unit sphere of `ℝᵈ`, `W` with i.i.d. N(0, 1) entries, `V` with
        i.i.d. unit-variance entries drawn from `v_law` (see [`flowdip.sample_V`][]).
        """
        d, k, n = positive_int("d", d), positive_int("k", k), positive_int("n", n)
        dtype = _default_dtype(dtype)
        k_u, k_w, k_v = jr.split(key, 3)
        u = uniform_on_sphere(k_u, d, dtype)
        W = sample_W(k_w, k, d, dtype)
        V = sample_V(k_v, n, k, v_law, dtype)
        return cls(u=u, W=W, V=V, activation=activation, train_V=train_V)

    @property
    def width(self) -> int:
        """Hidden width `k` (the padded width when a `mask` is set)."""
        return self.W.shape[0]

    def readout(self) -> tuple[Float[Array, "n k"], Float[Array, ""]]:
        """`(V_eff, 1/√k_eff)`: `V` with masked columns zeroed, and the width scaling."""
        if self.mask is None:
            return self.V, jnp.asarray(1 / math.sqrt(self.width), self.V.dtype)
        return self.V * self.mask[None, :], 1 / jnp.sqrt(jnp.sum(self.mask))

    @property
    def out_size(self) -> int:
        """Signal size `n`."""
        return self.V.shape[0]

    @property
    def z(self) -> Float[Array, " k"]:
        """Pre-activations `z = W u`, the only quantity the dynamics move (docs/theory.md §3.2)."""
        return self.W @ self.u

    def __call__(self) -> Float[Array, " n"]:
        """The signal `V φ(W u)/√k`."""
        V, c = self.readout()
        return V @ self.activation(self.z) * c

    def trainable_filter(self) -> PyTree[bool]:
        """`W` (and `V` if `train_V`) are trained; `u` is frozen."""
        spec = jax.tree_util.tree_map(lambda _: False, self)
        return eqx.tree_at(lambda g: (g.W, g.V), spec, (True, self.train_V))

    def jacobian(self) -> Float[Array, "n k d"]:
        """Closed-form Jacobian `∂g/∂W`: `J[i, j, l] = V[i, j] φ'(z_j) u_l / √k`."""
        V, c = self.readout()
        s = self.activation.derivative(self.z) * c
        return (V * s[None, :])[:, :, None] * self.u[None, None, :]

    def ntk_gram(self) -> Float[Array, "n n"]:
        """`J Jᵀ = (‖u‖²/k) V diag(φ'(z)²) Vᵀ`, in `O(n²k)` without autodiff."""
        V, c = self.readout()
        s = self.activation.derivative(self.z)
        return (jnp.dot(self.u, self.u) * c**2) * (V * (s**2)[None, :]) @ V.T

    def sigma_min_jacobian(self, n_true: Int[ArrayLike, ""] | None = None) -> Float[Array, ""]:
        """`σ_min(J_g(W))` in closed form (zero when `k < n`).

        `σ_min(J)²` is the smallest eigenvalue of the `n × n` Gram matrix
        `(‖u‖²/k) V diag(φ'(z)²) Vᵀ` ([`flowdip.TwoLayerDIP.ntk_gram`][]). Its non-zero
        eigenvalues are those of the `k × k` matrix `(‖u‖²/k) S VᵀV S` (`S = diag(φ'(z))`), so
        the eigenproblem is solved on the smaller side: an `n × n` eigendecomposition at
        `n = 512` costs more than a whole run of descent. `n_true` (possibly traced) counts
        the true rows of a padded `V`; padded rows and masked neurons are zero in both forms.
        """
        n_pad, k_pad = self.V.shape
        if k_pad < n_pad:
            V, c = self.readout()
            s = self.activation.derivative(self.z)
            small = (jnp.dot(self.u, self.u) * c**2) * (s[:, None] * (V.T @ V) * s[None, :])
            lam = jnp.linalg.eigvalsh(small)
            # The true n×n Gram has the top n_true eigenvalues of `small` (the rest are zero);
            # with more signal entries than (true) neurons it is singular.
            n_true = jnp.asarray(n_pad if n_true is None else n_true)
            if self.mask is None:
                k_true = k_pad
            else:
                k_true = jnp.round(jnp.sum(self.mask)).astype(n_true.dtype)
            pos = jnp.clip(k_pad - n_true, 0, k_pad - 1)
            lam_min = jnp.where(n_true <= k_true, lam[pos], 0.0)
        else:
            gram = self.ntk_gram()
            n_true = n_pad if n_true is None else n_true
            idx = jnp.arange(n_pad)
            pad = 1 - (idx < jnp.asarray(n_true).astype(idx.dtype)).astype(gram.dtype)
            # Padded rows get an eigenvalue above every true one, out of the way of the min.
            lam_min = _smallest_eigenvalue(gram + jnp.diag(pad * (jnp.trace(gram) + 1)))
        return jnp.sqrt(jnp.maximum(lam_min, 0))


def _smallest_eigenvalue(a: Float[Array, "n n"]) -> Float[Array, ""]:
    """The smallest eigenvalue of a symmetric matrix: a Householder reduction to tridiagonal
    form, then bisection for that one eigenvalue. JAX's `eigvalsh` computes the eigenvectors
    too on a CPU, which makes it 3–4 times as costly at n = 100–512; the two agree to about
    `1e-16·cond` relative."""
    _, diag, off, _ = jax.lax.linalg.tridiagonal(a, lower=True)
    return eigh_tridiagonal(diag, off, eigvals_only=True, select="i", select_range=(0, 0))[0]


class MLP(AbstractGenerator):
    """A deep generator `x = W_L φ(… φ(W_2 φ(W_1 u)/√k_1) …)/√k_{L−1}`, every weight trained.

    Weights are initialised with N(0, 1) entries; each layer after the first is scaled by
    `1/√fan_in` (NTK scaling) and the first acts on the unit-norm input `u` directly, as in the
    two-layer net, so the two-layer DIP with `V` trained is the depth-2 case.
    """

    u: Float[Array, " d"]
    weights: tuple[Float[Array, "_out _in"], ...]
    activation: AbstractActivation = Tanh()

    def __check_init__(self):
        check_activation("activation", self.activation)
        if len(self.weights) < 1:
            raise ValueError("An MLP needs at least one weight matrix.")
        fan_in = self.u.shape[0]
        for i, w in enumerate(self.weights):
            if w.ndim != 2 or w.shape[1] != fan_in:
                raise ValueError(f"weights[{i}] has shape {w.shape}; expected (·, {fan_in}).")
            fan_in = w.shape[0]

    @classmethod
    @checked
    def init(
        cls,
        key: PRNGKeyArray,
        *,
        d: Size,
        widths: Sequence[Size],
        n: Size,
        activation: AbstractActivation = Tanh(),
        dtype=None,
    ) -> "MLP":
        """An MLP with hidden `widths`, input `u` uniform on the sphere of `ℝᵈ`, output size `n`."""
        sizes = [positive_int("d", d)]
        sizes += [positive_int(f"widths[{i}]", w) for i, w in enumerate(widths)]
        sizes += [positive_int("n", n)]
        dtype = _default_dtype(dtype)
        k_u, *keys = jr.split(key, len(sizes))
        u = uniform_on_sphere(k_u, d, dtype)
        weights = tuple(
            jr.normal(kk, (fan_out, fan_in), dtype)
            for kk, fan_in, fan_out in zip(keys, sizes[:-1], sizes[1:])
        )
        return cls(u=u, weights=weights, activation=activation)

    @property
    def out_size(self) -> int:
        """Signal size `n`."""
        return self.weights[-1].shape[0]

    def __call__(self) -> Float[Array, " n"]:
        """The signal."""
        # u is on the unit sphere, so the first layer needs no 1/√d: W₁u ~ N(0, I).
        h = self.u
        for i, w in enumerate(self.weights):
            pre = w @ h if i == 0 else w @ h / math.sqrt(w.shape[1])
            h = self.activation(pre) if i < len(self.weights) - 1 else pre
        return h

    def trainable_filter(self) -> PyTree[bool]:
        """Every weight matrix is trained; `u` is frozen."""
        spec = jax.tree_util.tree_map(lambda _: True, self)
        return eqx.tree_at(lambda g: g.u, spec, False)
