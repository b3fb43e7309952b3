"""Linear inverse problems: compressed-sensing instances, noise, operators and input checks."""

import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np
import pytest

import flowdip as fd


# Small instances are (M, N) = (6, 8) and large ones (200, 200): the same shapes as in
# test_networks.py, since every new shape of a random draw costs a compilation.
M, N = 6, 8


def _small(seed=0):
    key = jr.key(seed)
    k_a, k_x = jr.split(key)
    A = jr.normal(k_a, (M, N), jnp.float64)
    x = jr.normal(k_x, (N,), jnp.float64)
    return A, x


def test_compressed_sensing_shapes():
    problem = fd.InverseProblem.compressed_sensing(jr.key(0), M, N)
    assert (problem.m, problem.n) == (M, N)
    assert problem.y.shape == (M,)
    assert problem.x_true.shape == (N,)
    assert problem.matrix.shape == (M, N)
    assert problem.y.dtype == jnp.float64 and problem.matrix.dtype == jnp.float64
    assert isinstance(problem.operator, lx.MatrixLinearOperator)
    assert problem.noise_std == 0.0


def test_compressed_sensing_scalings():
    # 40000 N(0, s²) entries: the sample variance has relative std √(2/40000) ≈ 0.7%.
    m, n = 200, 200
    unit = fd.InverseProblem.compressed_sensing(jr.key(1), m, n, scaling="unit")
    scaled = fd.InverseProblem.compressed_sensing(jr.key(1), m, n, scaling="1/m")
    A_unit, A_scaled = np.asarray(unit.matrix), np.asarray(scaled.matrix)
    assert abs(A_unit.var() - 1) < 0.05
    assert abs(A_scaled.var() * m - 1) < 0.05
    # Same key, same draws: the two matrices differ exactly by the factor √m.
    np.testing.assert_allclose(A_scaled * np.sqrt(m), A_unit, rtol=1e-14)
    # The signal does not depend on the scaling; "gaussian" signals are N(0, 1) (200 entries:
    # the sample variance has std √(2/200) = 0.1).
    np.testing.assert_array_equal(scaled.x_true, unit.x_true)
    assert abs(np.asarray(unit.x_true).var() - 1) < 0.3


@pytest.mark.parametrize("seed", range(3))
def test_compressed_sensing_sphere_signal(seed):
    problem = fd.InverseProblem.compressed_sensing(jr.key(seed), M, N, signal="sphere")
    assert float(jnp.linalg.norm(problem.x_true)) == pytest.approx(1.0, abs=1e-14)


@pytest.mark.parametrize("scaling", ["unit", "1/m"])
def test_noiseless_observation_is_A_xbar(scaling):
    problem = fd.InverseProblem.compressed_sensing(jr.key(3), M, N, scaling=scaling)
    expected = np.asarray(problem.matrix) @ np.asarray(problem.x_true)
    np.testing.assert_allclose(problem.y, expected, rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(problem.noise, jnp.zeros(M, jnp.float64))


def test_noisy_observation():
    sigma = 0.1
    problem = fd.InverseProblem.compressed_sensing(jr.key(4), M, N, noise_std=sigma)
    assert problem.noise_std == sigma
    clean = np.asarray(problem.matrix) @ np.asarray(problem.x_true)
    noise = np.asarray(problem.noise)
    assert np.all(noise != 0)
    np.testing.assert_allclose(noise, np.asarray(problem.y) - clean, rtol=1e-10, atol=1e-12)


def test_noise_statistics_on_many_measurements():
    sigma, m = 0.1, 4000
    A, x = jnp.ones((m, 1), jnp.float64), jnp.ones(1, jnp.float64)
    problem = fd.InverseProblem(A, x, noise_std=sigma, key=jr.key(4))
    noise = np.asarray(problem.noise)
    np.testing.assert_allclose(noise, np.asarray(problem.y) - 1.0, rtol=1e-12, atol=1e-15)
    # 4000 N(0, σ²) draws: the sample std has relative std 1/√8000 ≈ 1.1%.
    assert abs(noise.std() / sigma - 1) < 0.05
    assert abs(noise.mean()) < 5 * sigma / np.sqrt(m)


def test_noise_is_reproducible_and_keyed():
    A, x = _small()
    p1 = fd.InverseProblem(A, x, noise_std=0.5, key=jr.key(0))
    p2 = fd.InverseProblem(A, x, noise_std=0.5, key=jr.key(0))
    p3 = fd.InverseProblem(A, x, noise_std=0.5, key=jr.key(1))
    np.testing.assert_array_equal(p1.y, p2.y)
    assert not np.allclose(p1.y, p3.y)


def test_noise_without_key_raises():
    A, x = _small()
    with pytest.raises(ValueError, match="key"):
        fd.InverseProblem(A, x, noise_std=0.1)


def test_from_observation():
    A, x = _small()
    y = A @ x
    problem = fd.InverseProblem.from_observation(A, y)
    assert problem.x_true is None
    assert problem.noise is None
    np.testing.assert_array_equal(problem.y, y)
    np.testing.assert_array_equal(problem.matrix, A)


def test_given_y_with_x_true_records_noise():
    A, x = _small()
    eps = jnp.linspace(-1.0, 1.0, M, dtype=jnp.float64)
    y = A @ x + eps
    problem = fd.InverseProblem(A, x, y=y)
    np.testing.assert_array_equal(problem.y, y)
    np.testing.assert_allclose(problem.noise, eps, rtol=1e-12, atol=1e-13)


def test_forward_and_adjoint():
    A, x = _small()
    problem = fd.InverseProblem(A, x)
    r = jnp.linspace(-2.0, 3.0, M, dtype=jnp.float64)
    A_np = np.asarray(A)
    np.testing.assert_allclose(problem.forward(x), A_np @ np.asarray(x), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(problem.adjoint(r), A_np.T @ np.asarray(r), rtol=1e-13, atol=1e-13)
    # ⟨A x, r⟩ = ⟨x, Aᵀ r⟩.
    lhs, rhs = jnp.dot(problem.forward(x), r), jnp.dot(x, problem.adjoint(r))
    assert float(lhs) == pytest.approx(float(rhs), rel=1e-13)


def test_singular_values():
    A, x = _small()
    problem = fd.InverseProblem(A, x)
    expected = np.linalg.svd(np.asarray(A), compute_uv=False)
    np.testing.assert_allclose(problem.singular_values(), expected, rtol=1e-12)


def test_lineax_matrix_operator():
    A, x = _small()
    problem = fd.InverseProblem(lx.MatrixLinearOperator(A), x)
    assert (problem.m, problem.n) == (M, N)
    np.testing.assert_allclose(problem.y, np.asarray(A) @ np.asarray(x), rtol=1e-13, atol=1e-13)
    observed = fd.InverseProblem.from_observation(lx.MatrixLinearOperator(A), problem.y)
    assert observed.x_true is None
    np.testing.assert_array_equal(observed.matrix, A)


def test_matrix_free_lineax_operator():
    A, x = _small()
    operator = lx.FunctionLinearOperator(lambda v: A @ v, jax.ShapeDtypeStruct((N,), jnp.float64))
    problem = fd.InverseProblem(operator, x)
    r = jnp.linspace(-2.0, 3.0, M, dtype=jnp.float64)
    A_np = np.asarray(A)
    np.testing.assert_allclose(problem.matrix, A_np, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(problem.y, A_np @ np.asarray(x), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(problem.adjoint(r), A_np.T @ np.asarray(r), rtol=1e-13, atol=1e-13)


def _nan_at(a, index):
    return a.at[index].set(jnp.nan)


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda A, x: fd.InverseProblem(_nan_at(A, (0, 0)), x), r"^A\b"),
        (lambda A, x: fd.InverseProblem(A, _nan_at(x, 3)), "x_true"),
        (lambda A, x: fd.InverseProblem.from_observation(A, _nan_at(A @ x, 1)), r"^y\b"),
        (lambda A, x: fd.InverseProblem(A, x, y=_nan_at(A @ x, 2)), r"^y\b"),
        (lambda A, x: fd.InverseProblem(A, x, noise_std=-0.1, key=jr.key(0)), "noise_std"),
        (lambda A, x: fd.InverseProblem(A, x, noise_std=float("nan")), "noise_std"),
        (lambda A, x: fd.InverseProblem(A, None), "x_true"),
    ],
    ids=["nan-A", "nan-x_true", "nan-y-observation", "nan-y", "negative-std", "nan-std", "none"],
)
def test_bad_values_raise(make, name):
    A, x = _small()
    with pytest.raises(ValueError, match=name):
        make(A, x)


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda A, x: fd.InverseProblem(A, x[:-1]), "parameter 'x_true'|^x_true has shape"),
        (
            lambda A, x: fd.InverseProblem.from_observation(A, (A @ x)[:-1]),
            "parameter 'y'|^y has shape",
        ),
        (lambda A, x: fd.InverseProblem(A, x, y=(A @ x)[:-1]), "parameter 'y'|^y has shape"),
    ],
    ids=["x_true", "y-observation", "y"],
)
def test_bad_shapes_raise(make, name):
    # Our ValueError, or jaxtyping's TypeCheckError (a TypeError) under the runtime checker;
    # either way the message names the argument.
    A, x = _small()
    with pytest.raises((ValueError, TypeError), match=name):
        make(A, x)


def test_non_matrix_A_raises():
    with pytest.raises((ValueError, TypeError), match="parameter 'A'|^A must be a matrix"):
        fd.InverseProblem(jnp.ones(5, jnp.float64), jnp.ones(5, jnp.float64))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(m=0, n=5), r"^m\b"),
        (dict(m=3, n=-2), r"^n\b"),
        (dict(m=3, n=5, scaling="1/n"), "scaling"),
        (dict(m=3, n=5, signal="sparse"), "signal"),
    ],
)
def test_compressed_sensing_bad_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        fd.InverseProblem.compressed_sensing(jr.key(0), **kwargs)
