"""Divergence of a descent is read off its parameters as well as its loss: with the sigmoid the
loss stays bounded while the parameters blow up, yet a catapult (the loss rising early, the
parameters growing a few times, then converging) is not flagged."""

import jax.numpy as jnp
import numpy as np
import pytest

import flowdip as fd
from flowdip._solve import PARAM_FACTOR
from flowdip._sweep.protocol import run_key


@pytest.fixture(scope="module")
def p1_objective():
    """A P1 instance (A ~ N(0, 1), sigmoid, m = 10, n = 40, k = 200) whose GD at step 1
    catapults: its loss rises in the first steps, then converges."""
    return fd.Instance().objective(run_key(0, 40, 10, 4), n=40, m=10, k=200, d=10)


def test_catapult_is_not_diverged(p1_objective):
    traj = fd.solve(p1_objective, fd.GradientDescent(1.0), num_steps=2000, stop=fd.LossBelow(1e-7))
    assert traj.result == fd.RESULTS.converged
    assert bool(traj.loss_rose)
    # The parameters grow a few times, far below the divergence factor.
    norm0 = float(jnp.linalg.norm(p1_objective.initial_state()))
    peak = norm0 + float(np.nanmax(np.asarray(traj.displacement)))
    assert 1.5 < peak / norm0 < 0.01 * PARAM_FACTOR


def test_huge_step_with_sigmoid_is_diverged(p1_objective):
    traj = fd.solve(p1_objective, fd.GradientDescent(1e6), num_steps=200, throw=False)
    assert traj.result == fd.RESULTS.diverged
    # The loss alone would not say it: the sigmoid saturates and keeps it bounded.
    assert float(traj.final_loss) < 1e6 * max(float(traj.initial_loss), 1.0)
    assert int(traj.num_steps) < 200
    with pytest.raises(fd.SolveError, match="parameter norm"):
        fd.solve(p1_objective, fd.GradientDescent(1e6), num_steps=200)


def test_param_factor_is_an_argument(p1_objective):
    # A loose enough factor lets the same run reach its horizon.
    traj = fd.solve(
        p1_objective, fd.GradientDescent(1e6), num_steps=20, param_factor=1e300, throw=False
    )
    assert traj.result == fd.RESULTS.successful
    for bad in (1.0, 0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="param_factor"):
            fd.solve(p1_objective, fd.GradientDescent(1.0), num_steps=2, param_factor=bad)


def test_sweep_flags_the_blow_up():
    grid = fd.Grid(n=[6], m=[4], k=[5, 12], seeds=2, d=3)
    ds = fd.sweep(grid, dynamics=fd.GradientDescent(1e6), num_steps=200, progress=False)
    codes = np.asarray(ds["result"])
    assert np.all(codes == fd.result_codes()["diverged"])
