"""Certificates against independent computations: dense Jacobians and Hessians, finite
differences, closed forms, and the runs themselves."""

import math

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from helpers import two_layer_objective

import flowdip as fd
from flowdip._linalg import signal_map, state_from_coordinates
from flowdip.experiments.certificates import near_objective


_JACOBIANS: dict = {}


def _dense_jacobian(obj, c):
    # Jitted once per objective: an eager jacobian dispatches (and compiles) op by op.
    if id(obj) not in _JACOBIANS:
        _JACOBIANS[id(obj)] = (obj, jax.jit(jax.jacobian(signal_map(obj))))
    return _JACOBIANS[id(obj)][1](c)


def _p(obj):
    return obj.coordinates(obj.initial_state()).shape[0]


@pytest.fixture(scope="module")
def small():
    # W-space (not reduced), so that the autodiff path differentiates the real parameters.
    obj = two_layer_objective(1, m=3, n=6, k=30, d=4, reduced=False)
    return obj, fd.certify(obj), fd.certify(obj, closed_form=False)


def test_closed_form_sigma0_and_composite_match_autodiff(small):
    obj, closed, auto = small
    J = _dense_jacobian(obj, jnp.zeros(_p(obj)))
    sv = jnp.linalg.svd(J, compute_uv=False)
    A = obj.problem.matrix
    sv_comp = jnp.linalg.svd(A @ J, compute_uv=False)
    for cert in (closed, auto):
        assert np.isclose(cert.sigma0, sv[-1], rtol=1e-9)
        assert np.isclose(cert.composite_sigma0, sv_comp[-1], rtol=1e-9)
    # The composite NTK is at least σ_A σ₀ (docs/theory.md §10.1).
    assert closed.composite_sigma0 >= closed.sigma_A * closed.sigma0 * (1 - 1e-12)
    assert np.isclose(closed.sigma_A, jnp.linalg.svd(A, compute_uv=False)[-1], rtol=1e-12)
    assert "lip_J" in auto.estimates and "lip_J" not in closed.estimates


def test_closed_form_lipschitz_bounds_finite_differences(small):
    obj, closed, auto = small
    p = _p(obj)
    ratios = []
    for i in range(4):
        k1, k2 = jr.split(jr.key(10 + i))
        c1 = jr.normal(k1, (p,)) * 0.5
        c2 = c1 + jr.normal(k2, (p,)) * 0.1
        dJ = _dense_jacobian(obj, c2) - _dense_jacobian(obj, c1)
        ratios.append(float(jnp.linalg.norm(dJ, 2) / jnp.linalg.norm(c2 - c1)))
    assert max(ratios) <= float(closed.lip_J)
    # The sampled autodiff estimate is a lower bound of the closed form.
    assert 0 < float(auto.lip_J) <= float(closed.lip_J) * (1 + 1e-9)
    # sup‖J‖ ≤ the closed-form Lip(g) bound, and the sampled estimate lies below it.
    J0 = _dense_jacobian(obj, jnp.zeros(p))
    assert float(jnp.linalg.norm(J0, 2)) <= float(closed.lip_g) * (1 + 1e-12)
    assert float(auto.lip_g) <= float(closed.lip_g) * (1 + 1e-9)


def test_hvp_estimate_of_L_below_closed_form_bound(small):
    obj, closed, _ = small
    assert np.isfinite(closed.L_bound)
    assert float(closed.L_estimate) <= float(closed.L_bound)

    def F(c):
        return obj.value(state_from_coordinates(obj, c))

    p = _p(obj)
    hessian = jax.jit(jax.hessian(F))
    H0 = hessian(jnp.zeros(p))
    top = float(jnp.max(jnp.abs(jnp.linalg.eigvalsh(H0))))
    # The estimate includes θ₀, where power iteration converges to the dense Hessian's norm.
    assert float(closed.L_estimate) >= top * (1 - 1e-3)
    # The bound holds at random points of the ball of radius R, checked densely.
    for i in range(3):
        c = fd._linalg.random_in_ball(jr.key(i), p, closed.R)
        H = hessian(c)
        assert float(jnp.max(jnp.abs(jnp.linalg.eigvalsh(H)))) <= float(closed.L_bound)
    # Default step size and discretisation constant (docs/theory.md §8.1–§8.2).
    assert np.isclose(closed.step_size, 1 / closed.L_bound)
    assert np.isclose(closed.c_gamma, 0.5)


def test_matrix_free_certificate_marks_estimates(small):
    # The autodiff path (any generator: Lanczos σ₀ checked against the SVD above) has no
    # closed-form L or widths, and labels its sampled quantities. (A separate MLP certificate
    # would compile the whole autodiff path once more for the same checks.)
    _, _, auto = small
    assert np.isnan(auto.L_bound) and np.isfinite(auto.L_estimate)
    assert np.isnan(auto.width_threshold)
    assert "(estimate)" in fd.plot.certificate_table(auto)


def test_mse_formulas_and_widths(small):
    obj, cert, _ = small
    # R, R', κ and the flow's MSE bound in closed form (docs/theory.md §6.2, §4).
    y0 = obj.problem.forward(obj.signal(obj.initial_state()))
    r0 = float(jnp.linalg.norm(y0 - obj.problem.y))
    s_a, s0 = float(cert.sigma_A), float(cert.sigma0)
    assert np.isclose(cert.R_prime, 2 * r0 / (s_a * s0))
    assert np.isclose(cert.R, s0 / (2 * float(cert.lip_J)))
    t = jnp.asarray([0.0, 3.0, 50.0])
    expected = 0.5 * r0**2 * np.exp(-(s_a**2) * s0**2 * np.asarray(t) / 2)
    assert np.allclose(cert.predicted_loss(t), expected, rtol=1e-10)
    steps = jnp.asarray([0.0, 10.0])
    tau_t = np.asarray(steps) * float(cert.step_size) * float(cert.c_gamma)
    expected_gd = 0.5 * r0**2 * np.exp(-(s_a**2) * s0**2 * tau_t / 2)
    assert np.allclose(cert.predicted_loss_descent(steps), expected_gd, rtol=1e-10)
    # The realised threshold is exactly where R' = R (the closed-form Lip uses max_j‖V_j‖).
    assert np.isclose(float(cert.R_prime / cert.R) ** 2, cert.width_threshold / cert.width)
    assert np.isclose(cert.width_threshold_descent, cert.width_threshold / 0.25)
    # Chernoff width at δ = 3/4, failure 1/n: 4.96 n D² B² ln n / C_φ'²
    # (docs/theory.md §7.4 step 1).
    act = fd.Sigmoid()
    n = obj.problem.n
    k_ch = 4.958 * n * act.B**2 * math.log(n) / act.C_phi_prime**2
    assert np.isclose(cert.width_chernoff, k_ch, rtol=1e-3)
    table = fd.plot.certificate_table(cert)
    assert "§7.4" in table and "R_prime" in table


def test_constants_are_parameters_and_validated(small):
    obj, cert, _ = small
    # Closed forms only (other constants are another compiled program; R, R', κ are not sampled).
    other = fd.certify(obj, constants=fd.TheoryConstants(sigma_fraction=0.25), sampled=False)
    # R' = ψ₀/(f σ_A σ₀), R = (1 − f) σ₀/Lip: both scale as the formulas say.
    assert np.isclose(other.R_prime, cert.R_prime * 2)
    assert np.isclose(other.R, cert.R * 1.5)
    assert np.isclose(other.kappa, cert.kappa / 4)
    for bad in (dict(sigma_fraction=1.0), dict(chernoff_delta=0.0), dict(step_size_factor=2.5)):
        with pytest.raises(ValueError, match=list(bad)[0]):
            fd.TheoryConstants(**bad)


# One shape (n, m, k, d) = (6, 3, 60, 5) and one save grid for every run below, so that the
# solves and certificates compile once.
_STEPS = 150


def _runs(obj, step_size):
    gd = fd.solve(obj, fd.GradientDescent(step_size), num_steps=_STEPS, num_saves=_STEPS + 1)
    gf = fd.solve(obj, fd.GradientFlow(), t1=float(_STEPS * step_size), num_saves=101)
    return gd, gf


def test_when_R_prime_below_R_the_runs_obey_the_theorem():
    obj = near_objective(jr.key(0), n=6, m=3, k=60, d=5, eps=0.02)
    cert = fd.certify(obj)
    assert bool(cert.condition_flow) and bool(cert.condition_descent)
    for traj in _runs(obj, cert.step_size):
        path = fd.certify(obj, trajectory=traj).path
        assert bool(path.condition)
        assert bool(path.displacement_ok), (path.displacement.max(), path.radius)
        assert bool(path.sigma_ok)
        assert bool(path.loss_ok)
        assert bool(path.path_ok)
        # and independently of the flags: max displacement below R', σ_min above σ₀/2.
        assert float(jnp.nanmax(path.displacement)) < float(path.radius)
        assert float(jnp.nanmin(path.sigma_min)) >= float(cert.sigma0) / 2
        ok = np.asarray(path.valid)
        assert np.all(np.asarray(path.loss)[ok] <= np.asarray(path.predicted_loss)[ok] * 1.000001)
        assert np.asarray(path.loss)[ok][-1] < 1e-3 * float(cert.loss0)


def test_pathwise_certificate_holds_when_R_prime_below_R_fails():
    for seed, step_factor in [(0, 1.0), (1, 1.6)]:
        obj = two_layer_objective(seed, m=3, n=6, k=60, d=5)
        cert = fd.certify(obj)
        assert not bool(cert.condition_flow)
        gd, gf = _runs(obj, step_factor * cert.step_size)
        for traj in (gd, gf):
            path = fd.certify(obj, trajectory=traj).path
            assert bool(path.path_ok), (float(path.path_length), float(path.path_certificate))
        # The flow's certificate is finite (σ_min stays positive); descent's is infinite when
        # γ L ≥ 2 for the L of the ball the run stayed in (the descent lemma then says nothing).
        assert np.isfinite(path.path_certificate) and float(path.path_length) > 0


@pytest.mark.parametrize(
    "loss",
    [fd.MSE(), fd.Huber(0.3), fd.PseudoHuber(0.3), fd.PowerLoss(1.5), fd.PowerLoss(2.0)]
    + [fd.PowerLoss(3.0)],
    ids=lambda loss: repr(loss),
)
def test_rate_inverse_inverts_rate(loss):
    s = jnp.geomspace(1e-9, 1e3, 40)
    assert np.allclose(loss.rate_inverse(loss.rate(s)), s, rtol=1e-9)
    assert np.allclose(fd._theory.recovery.psi_inverse(loss, loss.psi(s)), s, rtol=1e-9)


def test_certify_vmaps_over_seeds():
    # Closed forms only: the sampled estimates' batching is that of jax.vmap over fori_loops,
    # and compiling them batched costs more than the rest of this file's certificates.
    def cert_of(key):
        return fd.certify(near_objective(key, n=6, m=3, k=60, d=5), sampled=False)

    keys = jr.split(jr.key(5), 3)
    batched = jax.vmap(cert_of)(keys)
    for i in range(3):
        one = cert_of(keys[i])
        for name in ("sigma0", "R", "R_prime", "L_bound", "c_gamma", "width_threshold"):
            assert np.isclose(getattr(batched, name)[i], getattr(one, name), rtol=1e-9), name
