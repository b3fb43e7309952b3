"""The P1 protocol of a sweep: which cells run (`Grid`), how each run's problem and network
are drawn (`Instance`), and the key of every run (`run_key`)."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._generator.activations import AbstractActivation, Sigmoid
from .._generator.networks import (
    check_activation,
    sample_V,
    sample_W,
    TwoLayerDIP,
    uniform_on_sphere,
    V_LAWS,
)
from .._losses import AbstractLoss, MSE
from .._objective import Objective
from .._problem.problem import InverseProblem
from .._typing import check_int, Size


def _ints(name: str, values) -> tuple[int, ...]:
    if isinstance(values, int | np.integer) and not isinstance(values, bool | np.bool_):
        values = (values,)
    elif isinstance(values, str | bytes) or not isinstance(
        values, list | tuple | range | np.ndarray
    ):
        raise TypeError(f"{name} must be an integer or a list of integers; got {name}={values!r}.")
    values = tuple(values)
    if not values:
        raise ValueError(f"{name} must hold at least one size; got {name}={values!r}.")
    for i, v in enumerate(values):
        try:
            check_int(f"{name}[{i}]", v)
        except (TypeError, ValueError) as error:
            message = f"{name} must be integers >= 1; got {name}[{i}]={v!r}."
            raise type(error)(message) from None
    values = tuple(int(v) for v in values)
    if len(set(values)) != len(values):
        raise ValueError(f"{name} has repeated values: {values!r}.")
    return tuple(sorted(values))


@dataclasses.dataclass(frozen=True)
class Grid:
    """The cells of a sweep: every combination of `n`, `m`, `k`, each run `seeds` times.

    **Arguments:** `n` (signal sizes), `m` (measurement counts), `k` (widths): an int or a
    list each; `seeds`: runs per cell; `d`: input size (it does not affect the dynamics).
    """

    n: tuple[int, ...]
    m: tuple[int, ...]
    k: tuple[int, ...]
    seeds: int = 50
    d: int = 10

    def __init__(self, *, n, m, k, seeds: Size = 50, d: Size = 10):
        object.__setattr__(self, "n", _ints("n", n))
        object.__setattr__(self, "m", _ints("m", m))
        object.__setattr__(self, "k", _ints("k", k))
        object.__setattr__(self, "seeds", check_int("seeds", seeds))
        object.__setattr__(self, "d", check_int("d", d))

    @property
    def num_runs(self) -> int:
        """Total number of runs."""
        return len(self.n) * len(self.m) * len(self.k) * self.seeds


@dataclasses.dataclass(frozen=True)
class Instance:
    """How each run's problem and network are drawn (the P1 protocol by default).

    `A` (entries N(0,1) for `scaling="unit"`, N(0,1/m) for `"1/m"`) and `x̄` (N(0,1) entries,
    or uniform on the sphere) come from the run key's problem part; `u`, `W₀` and `V` (law
    `v_law`) from its network part, neuron by neuron, so that a width-`k` network is the first
    `k` neurons of any wider one drawn from the same key.
    """

    activation: AbstractActivation = Sigmoid()
    v_law: str = "rademacher"
    scaling: str = "unit"
    signal: str = "gaussian"
    noise_std: float = 0.0
    loss: AbstractLoss = MSE()

    def __post_init__(self):
        check_activation("activation", self.activation)
        if not isinstance(self.loss, AbstractLoss):
            raise TypeError(f"loss must be a loss such as flowdip.MSE(); got loss={self.loss!r}.")
        for name in ("scaling", "signal", "v_law"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a string; got {name}={getattr(self, name)!r}.")
        if not isinstance(self.noise_std, int | float | np.integer | np.floating) or isinstance(
            self.noise_std, bool
        ):
            raise TypeError(f"noise_std must be a number >= 0; got noise_std={self.noise_std!r}.")
        if self.scaling not in ("unit", "1/m"):
            raise ValueError(f"scaling must be 'unit' or '1/m'; got {self.scaling!r}.")
        if self.signal not in ("gaussian", "sphere"):
            raise ValueError(f"signal must be 'gaussian' or 'sphere'; got {self.signal!r}.")
        if not (math.isfinite(self.noise_std) and self.noise_std >= 0):
            raise ValueError(f"noise_std must be >= 0; got noise_std={self.noise_std}.")
        if self.v_law not in V_LAWS:
            raise ValueError(f"v_law must be one of {V_LAWS}; got {self.v_law!r}.")

    def objective(
        self, key, *, n: int, m: int, k: int, d: int, n_true=None, m_true=None, k_true=None
    ) -> Objective:
        """The objective of one run.

        `n`, `m`, `k` are the array sizes; `n_true`, `m_true`, `k_true` (possibly traced)
        switch off what lies beyond them (zero rows and columns, masked neurons), so that a
        padded run computes exactly the unpadded one. Every entry is drawn from its own folded
        key, so values never depend on the padding.
        """
        dtype = jnp.result_type(float)
        k_a, k_x, k_e, k_u, k_w, k_v = jr.split(key, 6)
        n_true = n if n_true is None else n_true
        m_true = m if m_true is None else m_true
        rows = _below(m, m_true, dtype)
        cols = _below(n, n_true, dtype)

        def entries(kk, shape):
            idx = [jnp.arange(s) for s in shape]
            if len(shape) == 1:
                return jax.vmap(lambda i: jr.normal(jr.fold_in(kk, i), (), dtype))(idx[0])
            return jax.vmap(
                lambda i: jax.vmap(
                    lambda j: jr.normal(jr.fold_in(jr.fold_in(kk, i), j), (), dtype)
                )(idx[1])
            )(idx[0])

        A = entries(k_a, (m, n)) * rows[:, None] * cols[None, :]
        if self.scaling == "1/m":
            A = A / jnp.sqrt(jnp.asarray(m_true, dtype))
        x = entries(k_x, (n,)) * cols
        if self.signal == "sphere":
            x = x / jnp.linalg.norm(x)
        y = A @ x + self.noise_std * entries(k_e, (m,)) * rows
        problem = InverseProblem(A, x, y=y, noise_std=self.noise_std)
        V = sample_V(k_v, n, k, self.v_law) * cols[:, None]
        mask = None if k_true is None else _below(k, k_true, dtype)
        net = TwoLayerDIP(
            u=uniform_on_sphere(k_u, d),
            W=sample_W(k_w, k, d),
            V=V,
            activation=self.activation,
            mask=mask,
        )
        return Objective(problem, net, self.loss)


def _below(size: int, true, dtype):
    """`[j < true for j in range(size)]` as 0/1 floats (`true` may be traced)."""
    idx = jnp.arange(size)
    return (idx < jnp.asarray(true).astype(idx.dtype)).astype(dtype)


def run_key(seed: int, n: int, m: int, s: int):
    """The key of run `s` of the cells with sizes `(n, m)`: shared by every width `k`, so that
    widths are compared on common random numbers (same `A`, `x̄`, `u` and neurons)."""
    for name, v in (("seed", seed), ("n", n), ("m", m), ("s", s)):
        if not isinstance(v, jax.Array):
            check_int(name, v, 0)
    key = jr.key(seed)
    for v in (n, m, s):
        key = jr.fold_in(key, v)
    return key


@jax.jit
def _keys_from(base, nms):
    def one(row):
        key = base
        for j in range(3):
            key = jr.fold_in(key, row[j])
        return key

    return jax.vmap(one)(nms)


def run_keys(seed: int, nms: np.ndarray):
    """`run_key(seed, n, m, s)` for every row `(n, m, s)`, in one compiled call."""
    return _keys_from(jr.key(seed), jnp.asarray(nms))
