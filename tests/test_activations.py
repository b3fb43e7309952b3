"""Activations: closed-form derivatives, the suprema B and C, and the Gaussian moments."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special

import flowdip as fd


ACTIVATIONS = [fd.Sigmoid(), fd.Tanh(), fd.Softplus()]
IDS = ["sigmoid", "tanh", "softplus"]

# docs/theory.md §3.1, as printed: (B, C, C_φ, C_φ'), each with the number of printed decimals.
TABLE = {
    "Sigmoid": ((0.25, 2), (0.096225, 6), (0.541645, 6), (0.211746, 6)),
    "Tanh": ((1.0, 0), (0.769800, 6), (0.627929, 6), (0.681471, 6)),
    "Softplus": ((1.0, 0), (0.25, 2), (0.959816, 6), (0.541645, 6)),
}

# Independent NumPy/SciPy implementations of φ and φ' for the quadrature reference.
REFERENCE = {
    "Sigmoid": (scipy.special.expit, lambda x: scipy.special.expit(x) * scipy.special.expit(-x)),
    "Tanh": (np.tanh, lambda x: 1.0 / np.cosh(x) ** 2),
    "Softplus": (lambda x: np.logaddexp(x, 0.0), scipy.special.expit),
}


# A fine grid (spacing 3e-4) shared by the derivative and the supremum tests.
GRID = np.linspace(-30.0, 30.0, 200001)


@functools.cache
def _autodiff_derivatives(index):
    """`φ'` and `φ''` of `ACTIVATIONS[index]` on `GRID` by autodiff of `__call__` (cached)."""
    act, x = ACTIVATIONS[index], jnp.asarray(GRID)
    d1 = jax.vmap(jax.grad(act))(x)
    d2 = jax.vmap(jax.grad(jax.grad(act)))(x)
    return np.asarray(d1), np.asarray(d2)


@pytest.mark.parametrize("index", range(3), ids=IDS)
def test_derivatives_match_autodiff(index):
    act, x = ACTIVATIONS[index], jnp.asarray(GRID)
    d1, d2 = _autodiff_derivatives(index)
    np.testing.assert_allclose(act.derivative(x), d1, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(act.second_derivative(x), d2, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("act", ACTIVATIONS, ids=IDS)
def test_derivatives_keep_shape_and_dtype(act):
    x = jnp.linspace(-3.0, 3.0, 12, dtype=jnp.float64).reshape(3, 4)
    for f in (act, act.derivative, act.second_derivative):
        out = f(x)
        assert out.shape == (3, 4)
        assert out.dtype == jnp.float64


@pytest.mark.parametrize("index", range(3), ids=IDS)
def test_value_and_derivative(index):
    act, x = ACTIVATIONS[index], jnp.asarray(GRID)
    value, derivative = act.value_and_derivative(x)
    np.testing.assert_allclose(value, act(x), rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(derivative, _autodiff_derivatives(index)[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("index", range(3), ids=IDS)
def test_sup_constants_B_C(index):
    # Grid spacing 3e-4: the discretisation error of a smooth maximum is O(1e-8).
    act = ACTIVATIONS[index]
    d1, d2 = _autodiff_derivatives(index)
    max_d1 = float(np.max(np.abs(d1)))
    max_d2 = float(np.max(np.abs(d2)))
    assert abs(act.B - max_d1) <= 1e-6
    assert abs(act.C - max_d2) <= 1e-6
    # Upper bounds: never exceeded anywhere on the grid.
    assert max_d1 <= act.B * (1 + 1e-12)
    assert max_d2 <= act.C * (1 + 1e-12)


@pytest.mark.parametrize("act", ACTIVATIONS, ids=IDS)
def test_gaussian_moments_match_trapezoid(act):
    f, f_prime = REFERENCE[type(act).__name__]
    x = np.linspace(-40.0, 40.0, 400001)
    density = np.exp(-(x**2) / 2) / math.sqrt(2 * math.pi)
    c_phi = math.sqrt(np.trapezoid(f(x) ** 2 * density, x))
    c_phi_prime = math.sqrt(np.trapezoid(f_prime(x) ** 2 * density, x))
    assert abs(act.C_phi - c_phi) <= 1e-8
    assert abs(act.C_phi_prime - c_phi_prime) <= 1e-8


@pytest.mark.parametrize("act", ACTIVATIONS, ids=IDS)
def test_constants_match_theory_table(act):
    values = (act.B, act.C, act.C_phi, act.C_phi_prime)
    for value, (printed, decimals) in zip(values, TABLE[type(act).__name__]):
        # Agreement to the printed digits: within half a unit of the last printed decimal.
        assert abs(value - printed) <= 0.5 * 10.0**-decimals + 1e-15


def test_closed_form_constants():
    # Exact values quoted in docs/theory.md §3.1.
    assert fd.Sigmoid().C == pytest.approx(1 / (6 * math.sqrt(3)), rel=1e-15)
    assert fd.Tanh().C == pytest.approx(4 / (3 * math.sqrt(3)), rel=1e-15)
    # Softplus' = sigmoid, so C_φ'(softplus) = C_φ(sigmoid) and C(softplus) = B(sigmoid).
    assert fd.Softplus().C_phi_prime == pytest.approx(fd.Sigmoid().C_phi, rel=1e-14)
    assert fd.Softplus().C == fd.Sigmoid().B
