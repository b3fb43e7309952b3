"""Generators: the two-layer DIP (init laws, closed-form Jacobian, NTK Gram) and the MLP."""

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
import scipy.special

import flowdip as fd


ACTIVATIONS = [fd.Sigmoid(), fd.Tanh(), fd.Softplus()]
ACT_IDS = ["sigmoid", "tanh", "softplus"]
NUMPY_ACTIVATIONS = {
    "Sigmoid": scipy.special.expit,
    "Tanh": np.tanh,
    "Softplus": lambda x: np.logaddexp(x, 0.0),
}


# One small size for every exact test, n ≤ k. Random draws compile once per shape, so these
# are chosen to share shapes: W is the MLP's first layer, V its second and test_problem.py's A.
D, K, N = 6, 8, 6


@functools.cache
def _net(act_index=0, v_law="gaussian", seed=5):
    return fd.TwoLayerDIP.init(
        jr.key(seed), d=D, k=K, n=N, activation=ACTIVATIONS[act_index], v_law=v_law
    )


@functools.cache
def _mlp():
    return fd.MLP.init(jr.key(10), d=D, widths=(8, 6), n=N)


@eqx.filter_jit
def _autodiff_jacobian(net):
    """`∂g/∂W` by reverse-mode autodiff, shape `(n, k, d)`."""
    return jax.jacrev(lambda W: eqx.tree_at(lambda g: g.W, net, W)())(net.W)


def _shape_strings(shape):
    """How a shape is printed by our ValueErrors, `(5, 4)`, and by jaxtyping, `[5,4]`."""
    return str(tuple(shape)), "[" + ",".join(map(str, shape)) + "]"


# ----------------------------------------------------------------------------- TwoLayerDIP


def test_init_shapes_and_defaults():
    net = fd.TwoLayerDIP.init(jr.key(0), d=D, k=K, n=N)
    assert net.u.shape == (D,)
    assert net.W.shape == (K, D)
    assert net.V.shape == (N, K)
    assert net.width == K and net.out_size == N
    for leaf in (net.u, net.W, net.V):
        assert leaf.dtype == jnp.float64
    assert isinstance(net.activation, fd.Sigmoid)
    assert net.train_V is False
    assert net().shape == (N,)
    np.testing.assert_allclose(net.z, net.W @ net.u, rtol=1e-15)
    # The default law of V is Rademacher: the same key gives the same draws, all ±1.
    explicit = fd.TwoLayerDIP.init(jr.key(0), d=D, k=K, n=N, v_law="rademacher")
    np.testing.assert_array_equal(net.V, explicit.V)
    np.testing.assert_array_equal(np.abs(net.V), np.ones((N, K)))


@pytest.mark.parametrize("seed", range(5))
def test_init_u_on_unit_sphere(seed):
    net = fd.TwoLayerDIP.init(jr.key(seed), d=D, k=K, n=N)
    assert float(jnp.linalg.norm(net.u)) == pytest.approx(1.0, abs=1e-14)


@pytest.mark.parametrize("law", ["rademacher", "gaussian", "uniform"])
def test_init_laws_on_a_large_sample(law):
    # W ~ N(0, 1) and V with centred unit-variance entries, 40000 entries each: the sample
    # variance has std ≤ √(2/40000) ≈ 0.007, the sample mean 0.005.
    net = fd.TwoLayerDIP.init(jr.key(3), d=200, k=200, n=200, v_law=law)
    W, V = np.asarray(net.W), np.asarray(net.V)
    for sample in (W, V):
        assert abs(sample.mean()) < 0.05
        assert abs(sample.var() - 1) < 0.05
    if law == "rademacher":
        np.testing.assert_array_equal(np.abs(V), np.ones_like(V))
    if law == "uniform":
        assert np.max(np.abs(V)) <= math.sqrt(3)
        # U(−√3, √3) fills its support: the extremes are close to ±√3.
        assert np.max(np.abs(V)) > math.sqrt(3) - 0.01


def test_sample_V_bad_law_raises():
    with pytest.raises(ValueError, match="law"):
        fd.sample_V(jr.key(0), 2, 3, law="cauchy")


@pytest.mark.parametrize("act", ACTIVATIONS, ids=ACT_IDS)
def test_call_matches_hand_computation(act):
    net = _net(ACTIVATIONS.index(act))
    u, W, V = (np.asarray(a) for a in (net.u, net.W, net.V))
    expected = V @ NUMPY_ACTIVATIONS[type(act).__name__](W @ u) / math.sqrt(K)
    np.testing.assert_allclose(net(), expected, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("act", ACTIVATIONS, ids=ACT_IDS)
def test_jacobian_matches_autodiff(act):
    net = _net(ACTIVATIONS.index(act))
    expected = _autodiff_jacobian(net)
    assert expected.shape == (N, K, D)
    np.testing.assert_allclose(net.jacobian(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("act", ACTIVATIONS, ids=ACT_IDS)
def test_ntk_gram_matches_autodiff(act):
    net = _net(ACTIVATIONS.index(act))
    J = _autodiff_jacobian(net).reshape(N, K * D)
    np.testing.assert_allclose(net.ntk_gram(), J @ J.T, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("act", ACTIVATIONS, ids=ACT_IDS)
def test_sigma_min_matches_svd(act):
    # n ≤ k: J (n × kd) has full row rank, σ_min is its n-th singular value.
    net = _net(ACTIVATIONS.index(act), v_law="rademacher")
    J = _autodiff_jacobian(net).reshape(N, K * D)
    expected = jnp.linalg.svd(J, compute_uv=False)[-1]
    assert float(expected) > 1e-3
    assert float(net.sigma_min_jacobian()) == pytest.approx(float(expected), rel=1e-10)


def test_sigma_min_vanishes_when_k_below_n():
    # rank J ≤ k < n (docs/theory.md §3.2): the Gram matrix is singular.
    full = _net()
    k = 4  # keep the first four hidden units: k = 4 < n = 6
    net = fd.TwoLayerDIP(u=full.u, W=full.W[:k], V=full.V[:, :k], activation=full.activation)
    J = _autodiff_jacobian(net).reshape(N, k * D)
    assert float(jnp.linalg.svd(J, compute_uv=False)[-1]) < 1e-12
    # sqrt of a rounding-level eigenvalue (≈ 1e-17): at most ~1e-8.
    assert float(net.sigma_min_jacobian()) < 1e-6


def test_trainable_filter_default_trains_W_only():
    net = _net()
    spec = net.trainable_filter()
    assert (spec.u, spec.W, spec.V) == (False, True, False)
    trainable, frozen = net.partition()
    assert len(jax.tree_util.tree_leaves(trainable)) == 1
    assert trainable.W is net.W and trainable.u is None and trainable.V is None
    assert eqx.tree_equal(eqx.combine(trainable, frozen), net)


def test_trainable_filter_train_V():
    net = fd.TwoLayerDIP.init(jr.key(9), d=D, k=K, n=N, train_V=True)
    spec = net.trainable_filter()
    assert (spec.u, spec.W, spec.V) == (False, True, True)
    trainable, _ = net.partition()
    assert trainable.W is net.W and trainable.V is net.V and trainable.u is None


@pytest.mark.parametrize(
    "sizes, name",
    [(dict(d=3, k=0, n=2), "k"), (dict(d=0, k=3, n=2), "d"), (dict(d=3, k=3, n=-1), "n")],
)
def test_init_bad_sizes_raise(sizes, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        fd.TwoLayerDIP.init(jr.key(0), **sizes)


@pytest.mark.parametrize(
    "u_shape, W_shape, V_shape, culprits",
    [
        ((3,), (5, 4), (2, 5), [(3,), (5, 4)]),  # u does not match W's columns
        ((4,), (5, 4), (2, 6), [(2, 6)]),  # V does not match W's rows
    ],
)
def test_shape_mismatch_raises(u_shape, W_shape, V_shape, culprits):
    arrays = dict(
        u=jnp.ones(u_shape, jnp.float64),
        W=jnp.ones(W_shape, jnp.float64),
        V=jnp.ones(V_shape, jnp.float64),
    )
    # Our own ValueError, or jaxtyping's TypeCheckError (a TypeError) under the runtime checker.
    with pytest.raises((ValueError, TypeError)) as excinfo:
        fd.TwoLayerDIP(**arrays)
    message = str(excinfo.value)
    for shape in culprits:
        assert any(s in message for s in _shape_strings(shape)), message


# ------------------------------------------------------------------------------------- MLP


def test_mlp_init_shapes_and_output():
    mlp = _mlp()
    assert [w.shape for w in mlp.weights] == [(8, D), (6, 8), (N, 6)]
    assert mlp.u.shape == (D,)
    assert float(jnp.linalg.norm(mlp.u)) == pytest.approx(1.0, abs=1e-14)
    assert mlp.out_size == N
    out = mlp()
    assert out.shape == (N,) and out.dtype == jnp.float64
    assert isinstance(mlp.activation, fd.Tanh)


def test_mlp_trains_every_weight_but_not_u():
    mlp = _mlp()
    spec = mlp.trainable_filter()
    assert spec.u is False
    assert spec.weights == (True, True, True)
    trainable, frozen = mlp.partition()
    assert trainable.u is None
    assert len(jax.tree_util.tree_leaves(trainable)) == 3


def test_mlp_gradients_are_finite():
    mlp = _mlp()
    trainable, frozen = mlp.partition()
    grads = eqx.filter_jit(jax.grad(lambda t, f: jnp.sum(eqx.combine(t, f)() ** 2)))(
        trainable, frozen
    )
    leaves = jax.tree_util.tree_leaves(grads)
    assert [g.shape for g in leaves] == [(8, D), (6, 8), (N, 6)]
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert any(float(jnp.max(jnp.abs(g))) > 0 for g in leaves)


def test_mlp_bad_width_raises():
    with pytest.raises(ValueError, match=r"widths\[1\]"):
        fd.MLP.init(jr.key(0), d=D, widths=(8, 0), n=N)


def test_depth_two_mlp_is_the_two_layer_dip_with_V_trained():
    net = fd.MLP.init(jr.key(11), d=5, widths=(30,), n=7, activation=fd.Sigmoid())
    twin = fd.TwoLayerDIP(
        u=net.u, W=net.weights[0], V=net.weights[1], activation=fd.Sigmoid(), train_V=True
    )
    assert jnp.allclose(net(), twin(), rtol=0, atol=1e-14)
