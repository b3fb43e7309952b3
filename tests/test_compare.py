"""compare(), fitted rates and the convergence-order helper."""

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import two_layer_objective

import flowdip as fd


def test_fit_rate_recovers_an_exponential():
    ts = jnp.linspace(0.0, 10.0, 51)
    loss = 3.0 * jnp.exp(-0.7 * ts)
    assert jnp.isclose(fd.fit_rate(ts, loss), 0.7, rtol=1e-10)
    # A round-off plateau below the floor is left out of the fit.
    plateau = jnp.maximum(loss, 1e-300)
    assert jnp.isclose(fd.fit_rate(ts, plateau, floor=1e-12), 0.7, rtol=1e-10)
    assert jnp.isnan(fd.fit_rate(ts[:1], loss[:1]))


def test_loglog_slope_of_a_power_law():
    x = jnp.asarray([0.1, 0.2, 0.4, 0.8])
    slope, intercept = fd.loglog_slope(x, 5.0 * x**1.5)
    assert jnp.isclose(slope, 1.5, rtol=1e-12) and jnp.isclose(intercept, jnp.log(5.0))


def test_compare_aligns_times_and_measures_the_gap():
    obj = two_layer_objective()
    gd = fd.solve(obj, fd.GradientDescent(0.5), num_steps=40, ts=np.arange(0, 41, 4) * 0.5)
    # The flow on a finer grid (a superset of the descent's times).
    flow = fd.solve(obj, fd.GradientFlow(), t1=20.0, ts=np.arange(0, 81) * 0.25)
    cmp = fd.compare(flow, gd)
    assert jnp.allclose(cmp.ts, gd.ts)
    idx = np.arange(0, 81, 8)
    assert jnp.allclose(cmp.loss_flow, flow.loss[idx])
    gap = jnp.linalg.norm(gd.params - flow.params[idx], axis=1)
    assert jnp.allclose(cmp.param_gap, gap)
    assert cmp.param_gap[0] == 0.0 and jnp.all(cmp.param_gap[1:] > 0)
    assert jnp.allclose(cmp.loss_ratio, gd.loss / flow.loss[idx])
    assert jnp.isclose(cmp.step_size, 0.5)
    assert jnp.isclose(cmp.rate_flow, fd.fit_rate(cmp.ts, cmp.loss_flow), rtol=1e-12)
    # Two descents are not a flow and a descent: refused rather than measured.
    with pytest.raises(ValueError, match="flow must be a run of a flow"):
        fd.compare(gd, gd)


def test_compare_rejects_unaligned_runs():
    obj = two_layer_objective()
    gd = fd.solve(obj, fd.GradientDescent(0.5), num_steps=10, ts=[0.0, 2.5, 5.0])
    flow = fd.solve(obj, fd.GradientFlow(), t1=5.0, ts=[0.0, 2.0, 5.0])
    with pytest.raises(ValueError, match="ts=descent.ts"):
        fd.compare(flow, gd)
    no_params = fd.solve(obj, fd.GradientFlow(), t1=5.0, ts=[0.0, 2.5, 5.0], save_params=False)
    with pytest.raises(ValueError, match="save_params"):
        fd.compare(no_params, gd)
    generic = fd.solve(
        two_layer_objective(reduced=False), fd.GradientFlow(), t1=5.0, ts=[0.0, 2.5, 5.0]
    )
    with pytest.raises(ValueError, match="same Objective"):
        fd.compare(generic, gd)


def test_convergence_order_rejects_bad_step_sizes():
    obj = two_layer_objective()
    with pytest.raises(ValueError, match="whole number"):
        fd.convergence_order(obj, step_sizes=[0.3, 0.7], t=1.0)
    with pytest.raises(ValueError, match="two step sizes"):
        fd.convergence_order(obj, step_sizes=[0.5], t=1.0)
