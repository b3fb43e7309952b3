"""Optimistix baselines as discrete dynamics: same minimum as descent, same Trajectory."""

import jax.numpy as jnp
import optimistix as optx
import pytest
from helpers import two_layer_objective

import flowdip as fd


TOL = 1e-12


@pytest.fixture(scope="module")
def descent():
    # An easy instance: wide (k = 60 ≫ n = 10), so descent reaches F = 0 (to TOL).
    obj = two_layer_objective(k=60)
    return obj, fd.solve(obj, fd.GradientDescent(1.0), num_steps=20_000, stop=fd.LossBelow(TOL))


@pytest.mark.parametrize(
    "baseline",
    [
        fd.OptimistixBaseline.gauss_newton(),
        fd.OptimistixBaseline.levenberg_marquardt(),
        fd.OptimistixBaseline.bfgs(),
    ],
    ids=lambda b: b.name,
)
def test_baselines_reach_the_minimum_descent_reaches(baseline, descent):
    obj, gd = descent
    traj = fd.solve(obj, baseline, num_steps=300, stop=fd.LossBelow(TOL))
    assert bool(gd.converged) and bool(traj.converged)
    assert traj.final_loss < TOL and gd.final_loss < TOL
    # Far fewer iterations than descent's steps; time is the iteration count.
    assert int(traj.num_steps) < int(gd.num_steps) / 10
    assert jnp.isclose(traj.stop_time, traj.num_steps.astype(float))
    # The same objective's minimum: the loss at the final generator, recomputed.
    x = traj.final_generator()
    assert obj.loss(obj.problem.forward(x), obj.problem.y) < TOL
    if baseline.name != "BFGS":
        return
    # It goes through compare like a descent.
    flow = fd.solve(obj, fd.GradientFlow(), t1=300.0, ts=traj.ts)
    assert fd.compare(flow, traj).param_gap.shape == traj.ts.shape


def test_least_squares_solvers_need_the_mse():
    obj = two_layer_objective(k=60, loss=fd.Huber(0.5))  # the fixture's shapes
    with pytest.raises(ValueError, match="needs the MSE"):
        fd.solve(obj, fd.OptimistixBaseline.gauss_newton(), num_steps=3)
    with pytest.raises(TypeError, match="optimistix"):
        fd.OptimistixBaseline(optx.Bisection(rtol=1e-3, atol=1e-3))
