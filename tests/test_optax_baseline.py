"""Optax optimizers as a discrete dynamics: the steps are Optax's own, applied by hand to
losses written here; SGD is gradient descent; the learning rate is an array; solve, stop rules
and sweeps run it like descent."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

import flowdip as fd


STEPS = 5
TOL = 1e-12


@pytest.fixture(scope="module")
def problem():
    return fd.InverseProblem.compressed_sensing(jr.key(0), m=6, n=10, scaling="1/m")


@pytest.fixture(scope="module")
def two_layer():
    return fd.TwoLayerDIP.init(jr.key(1), d=4, k=12, n=10)


def _mse(problem, x):
    r = problem.operator.matrix @ x - problem.y
    return 0.5 * jnp.dot(r, r)


def _by_hand(opt, params, loss, steps):
    """`steps` Optax updates from `params`; the losses at every iterate and the last iterate."""
    # Optax's bias corrections mix Python floats and int32 counters (strict promotion refuses).
    with jax.numpy_dtype_promotion("standard"):
        state = opt.init(params)
        losses = []
        for _ in range(steps):
            value, grad = jax.value_and_grad(loss)(params)
            losses.append(value)
            updates, state = opt.update(grad, state, params)
            params = optax.apply_updates(params, updates)
        losses.append(loss(params))
    return jnp.stack(losses), params


def _solve_steps(objective, dynamics):
    # One save per step: `loss[τ] = F(θ_τ)` for τ = 0 … STEPS.
    return fd.solve(objective, dynamics, num_steps=STEPS, num_saves=STEPS + 1)


OPTIMIZERS = [
    (optax.adam, dict(learning_rate=0.05)),
    (optax.adam, dict(learning_rate=0.05, b1=0.5, eps=1e-3)),
    (optax.sgd, dict(learning_rate=0.3, momentum=0.9)),
]
IDS = ["adam", "adam-b1-eps", "sgd-momentum"]


@pytest.mark.parametrize("factory, kwargs", OPTIMIZERS[::2], ids=IDS[::2])
def test_steps_equal_optax_on_a_deep_generator(problem, factory, kwargs):
    # The generic path: an MLP, every weight trained.
    net = fd.MLP.init(jr.key(2), d=4, widths=[8], n=10)

    def loss(weights):
        return _mse(problem, eqx.tree_at(lambda g: g.weights, net, weights)())

    losses, weights = _by_hand(factory(**kwargs), net.weights, loss, STEPS)
    traj = _solve_steps(fd.Objective(problem, net), fd.OptaxBaseline(factory, **kwargs))
    assert np.allclose(traj.loss, losses, rtol=TOL, atol=0)
    for got, want in zip(traj.final_state[0].weights, weights):
        assert np.allclose(got, want, rtol=0, atol=TOL)
    assert np.allclose(traj.ts, np.asarray(traj.steps) * kwargs["learning_rate"], rtol=TOL)


@pytest.mark.parametrize("factory, kwargs", OPTIMIZERS, ids=IDS)
def test_steps_on_the_reduced_path_are_the_optimizer_on_W(problem, two_layer, factory, kwargs):
    # The reduced path moves z = W u; the optimizer must still see W and ∇_W F, as it does on
    # the generic path (Adam on z would scale each neuron by its own gradient history).
    net = two_layer

    def loss(W):
        x = net.V @ jax.nn.sigmoid(W @ net.u) / jnp.sqrt(net.width)
        return _mse(problem, x)

    losses, W = _by_hand(factory(**kwargs), net.W, loss, STEPS)
    objective = fd.Objective(problem, net)
    assert objective.reduced
    traj = _solve_steps(objective, fd.OptaxBaseline(factory, **kwargs))
    assert np.allclose(traj.loss, losses, rtol=TOL, atol=0)
    z, W_opt, _ = traj.final_state
    assert np.allclose(W_opt, W, rtol=0, atol=TOL)
    assert np.allclose(z, W @ net.u, rtol=0, atol=TOL)
    # The signal is that of the optimizer's W (the lift has the same pre-activations).
    assert np.allclose(traj.final_signal, eqx.tree_at(lambda g: g.W, net, W)(), atol=TOL)
    # The recorded displacement is the lift's, the least-norm W with these pre-activations:
    # SGD stays on W₀ + (·)uᵀ, Adam leaves it.
    distance = float(jnp.linalg.norm(W - net.W))
    if factory is optax.sgd:
        assert np.isclose(traj.displacement[-1], distance, rtol=1e-10)
    else:
        assert traj.displacement[-1] < 0.99 * distance


def test_sgd_is_gradient_descent_on_both_paths(problem, two_layer):
    eta = 0.5
    for reduced in (True, False):
        objective = fd.Objective(problem, two_layer, reduced=reduced)
        gd = fd.solve(objective, fd.GradientDescent(eta), num_steps=60, num_saves=7)
        sgd = fd.solve(objective, fd.OptaxBaseline(optax.sgd, eta), num_steps=60, num_saves=7)
        assert np.allclose(sgd.loss, gd.loss, rtol=TOL, atol=0)
        assert np.allclose(sgd.ts, gd.ts, rtol=0, atol=0)
        assert np.allclose(sgd.params, gd.params, rtol=0, atol=TOL)
        assert np.allclose(sgd.final_generator.W, gd.final_generator.W, rtol=0, atol=TOL)


def test_the_learning_rate_changes_without_recompiling(problem, two_layer):
    traces = []

    def counted_adam(learning_rate, **kwargs):
        # Called once per traced step; construction probes it with a number.
        if isinstance(learning_rate, jax.core.Tracer):
            traces.append(learning_rate)
        return optax.adam(learning_rate, **kwargs)

    objective = fd.Objective(problem, two_layer)
    adam = fd.OptaxBaseline(counted_adam, learning_rate=0.01, name="Adam")
    assert adam.label() == "Adam lr=0.01"
    first = fd.solve(objective, adam, num_steps=40)
    assert traces
    count = len(traces)
    faster = adam.with_step_size(0.04)
    assert faster.label() == "Adam lr=0.04" and faster.learning_rate.dtype == jnp.float64
    second = fd.solve(objective, faster, num_steps=40)
    again = fd.solve(objective, fd.OptaxBaseline(counted_adam, 0.04, name="Adam"), num_steps=40)
    assert len(traces) == count  # neither run traced the step again
    assert not np.isclose(second.final_loss, first.final_loss, rtol=1e-3)
    assert np.allclose(again.loss, second.loss, rtol=TOL, atol=0)
    assert float(second.stop_time) == pytest.approx(40 * 0.04)

    # A family of learning rates runs under vmap (the learning rate traced).
    def final_loss(lr):
        adam = fd.OptaxBaseline(optax.adam, learning_rate=lr)
        return fd.solve(objective, adam, num_steps=40, throw=False).final_loss

    batch = jax.vmap(final_loss)(jnp.array([0.01, 0.04]))
    assert np.allclose(batch, [first.final_loss, second.final_loss], rtol=1e-10, atol=0)


def test_labels_and_interface():
    assert fd.OptaxBaseline(optax.adam, learning_rate=1e-2).label() == "Adam lr=0.01"
    assert fd.OptaxBaseline(optax.sgd, 0.5, momentum=0.9).label() == "SGD lr=0.5"
    assert fd.OptaxBaseline(optax.adabelief, 1e-3).label() == "adabelief lr=0.001"
    chain = fd.OptaxBaseline(
        lambda learning_rate: optax.chain(optax.clip(1.0), optax.adam(learning_rate)), 1e-3
    )
    assert chain.label() == "optax lr=0.001"
    adam = fd.OptaxBaseline(optax.adam, learning_rate=1e-2)
    assert adam.time_per_step is adam.step_size and not adam.needs_float64


def test_runs_in_solve_and_sweep_like_descent(tmp_path):
    grid = fd.Grid(n=[4], m=[4], k=[16, 64], seeds=2, d=3)
    instance = fd.Instance(scaling="1/m")
    adam = fd.OptaxBaseline(optax.adam, learning_rate=0.1)
    stop = fd.LossBelow(1e-4)
    steps = 400
    kwargs = dict(dynamics=adam, num_steps=steps, stop=stop, instance=instance, progress=False)
    ds = fd.sweep(grid, out=tmp_path, **kwargs)
    assert ds.attrs["complete"] == 1
    # Its folder knows it again (the dynamics' fingerprint is stable): nothing is rerun.
    again = fd.sweep(grid, out=tmp_path, **kwargs)
    assert np.array_equal(again.final_loss, ds.final_loss, equal_nan=True)
    converged = 0
    for k in grid.k:
        for s in range(grid.seeds):
            # The k = 16 runs are padded to k = 64 in the sweep; solve runs them unpadded.
            obj = instance.objective(fd.run_key(0, 4, 4, s), n=4, m=4, k=k, d=3)
            traj = fd.solve(obj, adam, num_steps=steps, stop=stop, throw=False)
            cell = ds.sel(n=4, m=4, k=k, seed=s)
            assert np.isclose(cell.final_loss, traj.final_loss, rtol=1e-10)
            assert int(cell.num_steps) == int(traj.num_steps)
            assert np.isclose(cell.stop_time, traj.stop_time, rtol=TOL)
            assert bool(cell.converged) == bool(traj.result == fd.RESULTS.converged)
            if traj.result == fd.RESULTS.converged:
                converged += 1
                assert traj.final_loss < stop.tol and 0 < int(traj.num_steps) < steps
                # Stopped at the first step below the tolerance.
                assert float(traj.stop_time) == pytest.approx(int(traj.num_steps) * 0.1)
    assert 2 <= converged < 4  # both the stop rule and the cap are exercised


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        (("adam",), dict(learning_rate=0.1), TypeError, "constructor"),
        ((optax.adam(0.1),), dict(learning_rate=0.1), TypeError, "built GradientTransformation"),
        ((optax.scale_by_adam,), dict(learning_rate=0.1), TypeError, "cannot be built"),
        ((optax.adam,), dict(learning_rate=0.1, beta=0.9), TypeError, "beta"),
        ((lambda learning_rate: 3,), dict(learning_rate=0.1), TypeError, "returned int"),
        ((optax.adam,), dict(learning_rate=0.0), ValueError, "learning_rate must be .* > 0"),
        ((optax.adam,), dict(learning_rate=-1e-2), ValueError, "learning_rate=-0.01"),
        ((optax.adam,), dict(learning_rate=float("nan")), ValueError, "finite"),
        ((optax.adam,), dict(learning_rate=True), TypeError, "learning_rate must be a real"),
        ((optax.adam,), dict(learning_rate=[0.1, 0.2]), ValueError, "scalar"),
        ((optax.adam,), dict(learning_rate=0.1, name=""), TypeError, "name"),
    ],
)
def test_bad_input_is_named(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        fd.OptaxBaseline(*args, **kwargs)
