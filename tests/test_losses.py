"""KL losses: gradients, the KL inequality, ψ, the rate Ψ and its inverse, predicted losses."""

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import flowdip as fd


LOSSES = [
    fd.MSE(),
    fd.Huber(0.1),
    fd.Huber(1.0),
    fd.Huber(10.0),
    fd.PseudoHuber(0.5),
    fd.PseudoHuber(2.0),
    fd.PowerLoss(1.5),
    fd.PowerLoss(2),
    fd.PowerLoss(3),
]
IDS = [repr(loss) for loss in LOSSES]
LIPSCHITZ = [i for i, loss in enumerate(LOSSES) if loss.gradient_lipschitz]


def _random_pairs(key, num, m):
    """`num` pairs `(v, y)` in `ℝᵐ` with `‖v − y‖` spread log-uniformly over 1e-4..1e3.

    The residuals `v − y` cycle through the supports 1, 2, 3, 5 and `m` coordinates (zero
    elsewhere), so one batch also covers the lower dimensions exactly: zero coordinates add
    nothing to any of these losses or their gradients.
    """
    k_dir, k_scale, k_y = jr.split(key, 3)
    support = jnp.minimum(jnp.asarray([1, 2, 3, 5, m] * (num // 5), dtype=jnp.int64), m)
    mask = jnp.arange(m).reshape(1, m) < support.reshape(num, 1)
    direction = jnp.where(mask, jr.normal(k_dir, (num, m), jnp.float64), 0.0)
    direction = direction / jnp.linalg.norm(direction, axis=1, keepdims=True)
    scale = 10.0 ** jr.uniform(k_scale, (num, 1), jnp.float64, minval=-4.0, maxval=3.0)
    y = jr.normal(k_y, (num, m), jnp.float64)
    return y + scale * direction, y


@functools.cache
def _batches():
    """5000 pairs with m = 1, 5000 with m = 20, and 5000 more points `w` with the same `y`."""
    v1, y1 = _random_pairs(jr.key(1), 5000, 1)
    v20, y20 = _random_pairs(jr.key(20), 5000, 20)
    w20, y_w = _random_pairs(jr.key(21), 5000, 20)
    return (v1, y1), (v20, y20), (w20 - y_w + y20, y20)


@eqx.filter_jit
def _evaluate(loss, v, y):
    value = jax.vmap(loss)(v, y)
    gradient = jax.vmap(loss.gradient)(v, y)
    return value, gradient, jax.vmap(jax.grad(loss))(v, y), loss.psi_prime(value)


@functools.cache
def _results(index, batch):
    """Loss values, closed-form and autodiff gradients, and ψ'(loss) on `_batches()[batch]`.

    Cached, and compiled once per loss and shape: the two m = 20 batches share a compilation.
    """
    return tuple(np.asarray(a) for a in _evaluate(LOSSES[index], *_batches()[batch]))


# One grid of loss levels for every test of ψ and Ψ (a single shape keeps compilation cheap).
S_GRID = jnp.logspace(-12.0, 12.0, 97, dtype=jnp.float64)
# Times for the predicted-loss tests, of the same length for the same reason.
NUM_T = S_GRID.shape[0]


def _away_from_kink(loss, s):
    """Mask of the points farther than 0.1% from Huber's kink `δ²/2` (ψ' jumps there)."""
    s = np.asarray(s)
    if isinstance(loss, fd.Huber):
        return np.abs(s / (loss.delta**2 / 2) - 1) > 1e-3
    return np.ones(s.shape, dtype=bool)


@pytest.mark.parametrize("index", range(len(LOSSES)), ids=IDS)
def test_gradient_matches_autodiff(index):
    # m = 1 and m = 20 (with residuals supported on 1, 2, 3, 5 or 20 coordinates).
    for batch in range(3):
        _, gradient, expected, _ = _results(index, batch)
        np.testing.assert_allclose(gradient, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("loss", LOSSES, ids=IDS)
def test_loss_is_zero_exactly_at_y(loss):
    y = S_GRID  # any vector; this one is already on the device
    assert float(loss(y, y)) == 0.0
    np.testing.assert_array_equal(loss.gradient(y, y), jnp.zeros_like(y))


@pytest.mark.parametrize("batch, m", [(0, 1), (1, 20), (2, 20)])
@pytest.mark.parametrize("index", range(len(LOSSES)), ids=IDS)
def test_kl_inequality(index, batch, m):
    # Property test: ψ'(ℓ(v)) ‖∇ℓ(v)‖ ≥ 1 on 5000 random points (docs/theory.md §4), with
    # supports of 1, 2, 3, 5 and 20 coordinates mixed in the m = 20 batches.
    loss = LOSSES[index]
    value, gradient, _, psi_prime = _results(index, batch)
    assert gradient.shape == (5000, m)
    assert np.all((value > 0) & (value < loss.kl_eta))
    kl = psi_prime * np.linalg.norm(gradient, axis=1)
    assert kl.min() >= 1 - 1e-10


@pytest.mark.parametrize("loss", LOSSES, ids=IDS)
def test_psi_prime_matches_autodiff(loss):
    ok = _away_from_kink(loss, S_GRID)
    expected = np.asarray(jax.vmap(jax.grad(loss.psi))(S_GRID))[ok]
    np.testing.assert_allclose(np.asarray(loss.psi_prime(S_GRID))[ok], expected, rtol=1e-12)
    # The generic (autodiff) fallback of the base class agrees with the closed form.
    generic = np.asarray(fd.AbstractLoss.psi_prime(loss, S_GRID))[ok]
    np.testing.assert_allclose(generic, expected, rtol=1e-12)


@pytest.mark.parametrize("loss", LOSSES, ids=IDS)
def test_psi_is_a_desingulariser(loss):
    # ψ(0) = 0, ψ increasing and concave (ψ' non-increasing) on a log grid.
    assert float(loss.psi(jnp.asarray(0.0, jnp.float64))) == 0.0
    psi = loss.psi(S_GRID)
    psi_prime = loss.psi_prime(S_GRID)
    assert bool(jnp.all(psi_prime > 0))
    assert bool(jnp.all(jnp.diff(psi) > 0))
    assert bool(jnp.all(jnp.diff(psi_prime) <= 1e-12 * psi_prime[:-1]))


@pytest.mark.parametrize("loss", LOSSES, ids=IDS)
def test_rate_is_primitive_of_minus_psi_prime_squared(loss):
    s = S_GRID
    ok = _away_from_kink(loss, s)
    target = -(np.asarray(loss.psi_prime(s))[ok] ** 2)
    # Autodiff of the closed form.
    autodiff = np.asarray(jax.vmap(jax.grad(loss.rate))(s))[ok]
    np.testing.assert_allclose(autodiff, target, rtol=1e-10)
    # Central finite differences with a relative step h: error O(h²) + O(eps/h) ≈ 1e-9.
    h = 1e-5
    fd_derivative = (loss.rate(s * (1 + h)) - loss.rate(s * (1 - h))) / (2 * h * s)
    np.testing.assert_allclose(np.asarray(fd_derivative)[ok], target, rtol=1e-6)


@pytest.mark.parametrize("loss", LOSSES, ids=IDS)
def test_rate_inverse_roundtrip(loss):
    # Closed form, or the base class' bisection for PseudoHuber; 24 decades of loss levels.
    np.testing.assert_allclose(loss.rate_inverse(loss.rate(S_GRID)), S_GRID, rtol=1e-10)


@pytest.mark.parametrize(
    "loss", [fd.MSE(), fd.Huber(1.0), fd.PowerLoss(1.5), fd.PowerLoss(3)], ids=repr
)
def test_generic_rate_inverse_agrees_with_closed_form(loss):
    # The bisection of the base class inverts the closed-form rates too.
    g = loss.rate(S_GRID)
    generic = fd.AbstractLoss.rate_inverse(loss, g)
    np.testing.assert_allclose(generic, S_GRID, rtol=1e-10)
    np.testing.assert_allclose(generic, loss.rate_inverse(g), rtol=1e-10)


@pytest.mark.parametrize("loss", LOSSES, ids=IDS)
def test_rate_matches_generic_quadrature(loss):
    # Only differences carry meaning: compare Ψ(s) − Ψ(s_ref) with s_ref = S_GRID[48] ≈ 1.
    closed = loss.rate(S_GRID)
    closed = closed - closed[48]
    generic = fd.AbstractLoss.rate(loss, S_GRID)
    generic = generic - generic[48]
    # Huber's ψ'² has a kink at δ²/2 that degrades the Gauss–Legendre panels (measured ≈ 1e-5
    # relative); the smooth losses agree to ≈ 3e-15.
    tol = 1e-4 if isinstance(loss, fd.Huber) else 1e-10
    np.testing.assert_allclose(generic, closed, rtol=tol, atol=tol)


@pytest.mark.parametrize("loss", LOSSES, ids=IDS)
def test_predicted_loss_solves_the_rate_equation(loss):
    # Ψ(ℓ(t)) = Ψ(ℓ₀) + κ t while ℓ(t) > 0, and ℓ(t) is non-increasing.
    loss0, kappa = 2.5, 0.7
    t = jnp.linspace(0.0, 3.0, NUM_T, dtype=jnp.float64)
    pred = loss.predicted_loss(loss0, kappa, t)
    assert pred[0] == pytest.approx(loss0, rel=1e-10)
    assert bool(jnp.all(jnp.diff(pred) <= 0))
    pos = pred > 0
    lhs = loss.rate(jnp.where(pos, pred, 1.0))
    rhs = loss.rate(jnp.asarray(loss0, jnp.float64)) + kappa * t
    np.testing.assert_allclose(lhs[pos], rhs[pos], rtol=1e-9, atol=1e-12)


def test_predicted_loss_mse_is_exponential():
    loss0, kappa = 3.7, 0.8
    t = jnp.linspace(0.0, 10.0, NUM_T, dtype=jnp.float64)
    expected = loss0 * np.exp(-2 * kappa * np.asarray(t))
    np.testing.assert_allclose(fd.MSE().predicted_loss(loss0, kappa, t), expected, rtol=1e-12)
    # Huber is the MSE below δ²/2 = 50.
    np.testing.assert_allclose(fd.Huber(10.0).predicted_loss(loss0, kappa, t), expected, rtol=1e-12)


@pytest.mark.parametrize("p", [1.5, 2.0, 3.0])
def test_predicted_loss_power_family_closed_form(p):
    # docs/theory.md §4 with α = 1/p, c = p^{1/p}.
    loss0, kappa = 2.0, 0.3
    alpha, c = 1 / p, p ** (1 / p)
    c2a2 = c**2 * alpha**2
    t = np.linspace(0.0, 5.0, NUM_T)
    if p == 2:
        expected = loss0 * np.exp(-4 * kappa * t / c**2)
    elif p < 2:
        e = 2 * alpha - 1
        expected = np.maximum(loss0**e - e * kappa * t / c2a2, 0.0) ** (1 / e)
    else:
        e = 1 - 2 * alpha
        expected = (loss0**-e + e * kappa * t / c2a2) ** (-1 / e)
    pred = fd.PowerLoss(p).predicted_loss(loss0, kappa, jnp.asarray(t))
    np.testing.assert_allclose(pred, expected, rtol=1e-10)


def test_power_loss_reaches_zero_in_finite_time():
    p, loss0, kappa = 1.5, 2.0, 0.3
    alpha, c = 1 / p, p ** (1 / p)
    e = 2 * alpha - 1
    t_star = c**2 * alpha**2 * loss0**e / (e * kappa)
    loss = fd.PowerLoss(p)
    before = t_star * np.linspace(0.0, 0.99, NUM_T)
    expected = (loss0**e - e * kappa * before / (c**2 * alpha**2)) ** (1 / e)
    pred_before = loss.predicted_loss(loss0, kappa, jnp.asarray(before))
    np.testing.assert_allclose(pred_before, expected, rtol=1e-9)
    assert bool(jnp.all(pred_before > 0))
    after = jnp.asarray(t_star * (1 + 1e-9 + np.linspace(0.0, 9.0, NUM_T)))
    np.testing.assert_array_equal(
        loss.predicted_loss(loss0, kappa, after), jnp.zeros(NUM_T, jnp.float64)
    )
    assert loss.rate_at_zero == 0.0


@pytest.mark.parametrize(
    "loss, expected",
    [
        (fd.MSE(), True),
        (fd.Huber(1.0), True),
        (fd.PseudoHuber(1.0), True),
        (fd.PowerLoss(2), True),
        (fd.PowerLoss(1.5), False),
        (fd.PowerLoss(3), False),
    ],
    ids=repr,
)
def test_gradient_lipschitz_flag(loss, expected):
    assert loss.gradient_lipschitz is expected
    assert (loss.gradient_lipschitz_constant is not None) is expected


@pytest.mark.parametrize("index", LIPSCHITZ, ids=[IDS[i] for i in LIPSCHITZ])
def test_gradient_lipschitz_constant_holds(index):
    # ‖∇ℓ(v) − ∇ℓ(w)‖ ≤ L_ℓ ‖v − w‖ on 5000 random pairs at several scales (same y).
    (_, (v, _), (w, _)) = _batches()
    grad_v, grad_w = _results(index, 1)[1], _results(index, 2)[1]
    diff = np.linalg.norm(grad_v - grad_w, axis=1)
    bound = LOSSES[index].gradient_lipschitz_constant * np.linalg.norm(v - w, axis=1)
    assert np.all(diff <= bound * (1 + 1e-12))


def test_power_loss_below_two_has_unbounded_gradient_slope():
    # For p < 2 the gradient ‖r‖^{p−2} r is not Lipschitz at 0: the slope blows up.
    loss = fd.PowerLoss(1.5)
    y = jnp.zeros_like(S_GRID)
    r = y.at[0].set(1e-8)
    slope = jnp.linalg.norm(loss.gradient(r, y)) / jnp.linalg.norm(r)
    assert float(slope) == pytest.approx(1e4, rel=1e-10)


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: fd.Huber(0.0), "delta"),
        (lambda: fd.Huber(-1.0), "delta"),
        (lambda: fd.PseudoHuber(math.nan), "delta"),
        (lambda: fd.PseudoHuber(0.0), "delta"),
        (lambda: fd.PowerLoss(1), r"\bp\b"),
        (lambda: fd.PowerLoss(0.5), r"\bp\b"),
        (lambda: fd.PowerLoss(math.inf), r"\bp\b"),
    ],
)
def test_bad_parameters_raise(make, name):
    with pytest.raises(ValueError, match=name):
        make()
