"""Sharpness by Lanczos against dense Hessians; the closed-form Gauss–Newton part.

Every test uses objectives of one shape (k = 8 neurons) and module-level jitted helpers, so
that each compiled function is built once for the file.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest
from helpers import two_layer_objective

import flowdip as fd


# On the reduced path the state is z ∈ R^k: with k = 8 < 20 (the default Lanczos steps) the
# iteration meets an invariant subspace and must stop there cleanly.
K = 8


@pytest.fixture(scope="module")
def objectives():
    return {reduced: two_layer_objective(k=K, reduced=reduced) for reduced in (True, False)}


@eqx.filter_jit
def _dense_W_hessian(obj, W):
    """Independent: the Hessian of F in the (flattened) first-layer weights W, by autodiff of
    the plain loss `ℓ(A g(u, W), y)` (no reduced path, no Hessian-vector products)."""
    gen = obj.generator

    def F(W):
        g = eqx.tree_at(lambda m: m.W, gen, W)
        return obj.loss(obj.problem.forward(g()), obj.problem.y)

    return jax.hessian(F)(W).reshape(W.size, W.size)


_lanczos = eqx.filter_jit(fd.sharpness)
_hvp = eqx.filter_jit(fd.hessian_vector_product)
_gauss_newton = eqx.filter_jit(fd.gauss_newton_sharpness)


@pytest.mark.parametrize("reduced", [True, False])
def test_sharpness_is_the_largest_eigenvalue_of_the_dense_hessian(reduced, objectives):
    obj = objectives[reduced]
    evals = jnp.linalg.eigvalsh(_dense_W_hessian(obj, obj.generator.W))
    s = _lanczos(obj, obj.initial_state())
    assert jnp.isclose(s.value, evals[-1], rtol=1e-10)
    assert jnp.isclose(s.smallest, evals[0], rtol=1e-6)
    # The Ritz vector is an eigenvector (in the state's coordinates).
    unravel = jax.flatten_util.ravel_pytree(obj.initial_state())[1]
    Hv = _hvp(obj, obj.initial_state(), unravel(s.vector))
    assert jnp.allclose(jax.flatten_util.ravel_pytree(Hv)[0], s.value * s.vector, atol=1e-9)


def test_warm_start_vmap_and_along_a_trajectory(objectives):
    obj = objectives[True]
    traj = fd.solve(obj, fd.GradientDescent(1.0), num_steps=60, num_saves=3)
    along, gn = fd.sharpness_along(obj, traj, gauss_newton=True)
    states = jax.vmap(lambda c: fd.state_from_coordinates(obj, c))(traj.params)
    batched = jax.jit(jax.vmap(lambda z: fd.sharpness(obj, z).value))(states)
    for i in range(3):
        dense = jnp.linalg.eigvalsh(_dense_W_hessian(obj, obj.lift(states[i]).W))[-1]
        assert jnp.isclose(batched[i], dense, rtol=1e-10)
        assert jnp.isclose(along[i], dense, rtol=1e-10)
        assert jnp.isclose(gn[i], _gauss_newton(obj, states[i]), rtol=1e-12)
    # A start at the top eigenvector needs one Lanczos step.
    top = _lanczos(obj, states[2])
    assert jnp.isclose(_lanczos(obj, states[2], num_iters=1, init=top.vector).value, top.value)
    # With more steps it breaks down at the first: the Ritz vector is still the start vector
    # (it was NaN, which made every later warm start along a trajectory NaN).
    again = _lanczos(obj, states[2], init=top.vector)
    assert jnp.isclose(again.value, top.value, rtol=1e-12)
    assert jnp.isclose(jnp.abs(again.vector @ top.vector), 1.0, rtol=1e-12)
    eta = fd.normalised_sharpness(obj, traj)
    assert jnp.allclose(eta, 1.0 * along)


@eqx.filter_jit
def _dense_gauss_newton(obj, W):
    """Independent: `λ_max(Jᵀ ∇²ℓ J)` with `J` the Jacobian of `W ↦ A g(u, W)` and the loss
    Hessian, both by autodiff in W."""
    gen = obj.generator
    J = jax.jacfwd(lambda W: obj.problem.forward(eqx.tree_at(lambda m: m.W, gen, W)()))(W)
    J = J.reshape(J.shape[0], -1)
    v = obj.problem.forward(eqx.tree_at(lambda m: m.W, gen, W)())
    Hl = jax.hessian(lambda w: obj.loss(w, obj.problem.y))(v)
    return jnp.linalg.eigvalsh(J.T @ Hl @ J)[-1]


@pytest.mark.parametrize("loss", [fd.MSE(), fd.PseudoHuber(0.5)])
def test_gauss_newton_part_in_closed_form(loss):
    obj = two_layer_objective(k=K, loss=loss)
    z = obj.initial_state() + 0.3
    W = obj.lift(z).W
    dense = _dense_gauss_newton(obj, W)
    assert jnp.isclose(_gauss_newton(obj, z), dense, rtol=1e-10)
    generic = two_layer_objective(k=K, loss=loss, reduced=False)
    theta = eqx.tree_at(lambda m: m.W, generic.initial_state(), W)
    assert jnp.isclose(_gauss_newton(generic, theta), dense, rtol=1e-10)


def test_bad_arguments(objectives):
    obj = objectives[True]
    with pytest.raises(ValueError, match="num_iters"):
        fd.sharpness(obj, obj.initial_state(), num_iters=0)
    with pytest.raises(ValueError, match="init has shape"):
        fd.sharpness(obj, obj.initial_state(), init=jnp.ones(K + 1))
