"""Sharpness by Lanczos against dense Hessians; the closed-form Gauss–Newton part."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import two_layer_objective

import flowdip as fd


def _dense_W_hessian(obj):
    gen = obj.generator

    def F(W):
        g = eqx.tree_at(lambda m: m.W, gen, W)
        return obj.loss(obj.problem.forward(g()), obj.problem.y)

    p = gen.W.size
    return jax.jit(jax.hessian(F))(gen.W).reshape(p, p), F


@pytest.mark.parametrize("reduced", [True, False])
def test_sharpness_is_the_largest_eigenvalue_of_the_dense_hessian(reduced):
    obj = two_layer_objective(k=20, reduced=reduced)
    H, _ = _dense_W_hessian(obj)
    evals = jnp.linalg.eigvalsh(H)
    s = eqx.filter_jit(fd.sharpness)(obj, obj.initial_state())
    assert jnp.isclose(s.value, evals[-1], rtol=1e-10)
    assert jnp.isclose(s.smallest, evals[0], rtol=1e-6)
    # The Ritz vector is an eigenvector (in the state's coordinates).
    Hv = jax.flatten_util.ravel_pytree(
        fd.hessian_vector_product(
            obj,
            obj.initial_state(),
            jax.flatten_util.ravel_pytree(obj.initial_state())[1](s.vector),
        )
    )[0]
    assert jnp.allclose(Hv, s.value * s.vector, atol=1e-9)


def test_warm_start_vmap_and_along_a_trajectory():
    obj = two_layer_objective(k=20)
    traj = fd.solve(obj, fd.GradientDescent(1.0), num_steps=60, num_saves=4)
    along, gn = fd.sharpness_along(obj, traj, gauss_newton=True)
    states = jax.vmap(lambda c: fd.state_from_coordinates(obj, c))(traj.params)
    batched = jax.jit(jax.vmap(lambda z: fd.sharpness(obj, z).value))(states)
    H, F = _dense_W_hessian(obj)
    hessian = jax.jit(jax.hessian(F))
    for i in range(4):
        W = obj.lift(states[i]).W
        dense = jnp.linalg.eigvalsh(hessian(W).reshape(H.shape))[-1]
        assert jnp.isclose(batched[i], dense, rtol=1e-10)
        assert jnp.isclose(along[i], dense, rtol=1e-10)
        assert jnp.isclose(gn[i], fd.gauss_newton_sharpness(obj, states[i]), rtol=1e-12)
    # A start at the top eigenvector needs one Lanczos step.
    lanczos = eqx.filter_jit(fd.sharpness)
    top = lanczos(obj, states[2])
    assert jnp.isclose(lanczos(obj, states[2], num_iters=1, init=top.vector).value, top.value)
    eta = fd.normalised_sharpness(obj, traj)
    assert jnp.allclose(eta, 1.0 * along)


@pytest.mark.parametrize("loss", [fd.MSE(), fd.PseudoHuber(0.5)])
def test_gauss_newton_part_in_closed_form(loss):
    obj = two_layer_objective(k=20, loss=loss)
    z = obj.initial_state() + 0.3
    gen = obj.lift(z)
    # Independent: J by autodiff in W, loss Hessian by autodiff, dense JᵀHJ.
    J = jax.jacfwd(lambda W: obj.problem.forward(eqx.tree_at(lambda m: m.W, gen, W)()))(gen.W)
    J = J.reshape(J.shape[0], -1)
    v = obj.problem.forward(gen())
    Hl = jax.hessian(lambda w: loss(w, obj.problem.y))(v)
    dense = jnp.linalg.eigvalsh(J.T @ Hl @ J)[-1]
    assert jnp.isclose(fd.gauss_newton_sharpness(obj, z), dense, rtol=1e-10)
    generic = two_layer_objective(k=20, loss=loss, reduced=False)
    theta = eqx.tree_at(lambda m: m.W, generic.initial_state(), gen.W)
    assert jnp.isclose(fd.gauss_newton_sharpness(generic, theta), dense, rtol=1e-10)


def test_lanczos_on_a_tiny_state_and_bad_arguments():
    # Fewer parameters than Lanczos steps: the iteration stops at an invariant subspace.
    obj = two_layer_objective(k=3, n=3, m=2)
    H, _ = _dense_W_hessian(obj)
    s = eqx.filter_jit(fd.sharpness)(obj, obj.initial_state(), num_iters=50)
    assert np.isclose(s.value, jnp.linalg.eigvalsh(H)[-1], rtol=1e-10)
    with pytest.raises(ValueError, match="num_iters"):
        fd.sharpness(obj, obj.initial_state(), num_iters=0)
