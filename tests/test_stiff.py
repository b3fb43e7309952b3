"""The stiff gradient flow: its structured linear solve against dense algebra, its runs against
a tight explicit reference, and its place in solve and sweep."""

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import two_layer_objective

import flowdip as fd
from flowdip._dynamics.stiff import WoodburySolve
from flowdip._sweep import engine


@pytest.mark.parametrize(
    "activation, loss",
    [(fd.Sigmoid(), fd.MSE()), (fd.Tanh(), fd.PowerLoss(3.0)), (fd.Softplus(), fd.MSE())],
)
def test_structured_jacobian_and_solve_equal_dense_algebra(activation, loss):
    obj = two_layer_objective(3, m=4, n=7, k=12, activation=activation, loss=loss)
    # Away from the start so that the loss gradient (and the diagonal term) is not small.
    z = obj.initial_state() + 0.7 * jax.random.normal(jax.random.key(1), (12,))
    jac = obj.field_jacobian(z)
    dense = jax.jacfwd(lambda s: obj.vector_field(0.0, s))(z)
    np.testing.assert_allclose(jac.matrix(), dense, rtol=1e-10, atol=1e-12)
    # Symmetric: the negative Hessian of F in z (‖u‖ scales it but keeps the symmetry).
    np.testing.assert_allclose(dense, dense.T, rtol=1e-10, atol=1e-12)
    b = jax.random.normal(jax.random.key(2), (12,))
    v = jax.random.normal(jax.random.key(3), (12,))
    np.testing.assert_allclose(jac.matvec(v), dense @ v, rtol=1e-10, atol=1e-12)
    for a in (1e-3, 0.5, 30.0, 1e4):
        got = WoodburySolve.factorise(jac, jnp.asarray(a))(b)
        expected = jnp.linalg.solve(jnp.eye(12) - a * dense, b)
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10 * jnp.abs(expected).max())


# Three P1 runs of one padded shape (one compilation per solver): a stiff run that does not
# converge (n = 512), and two that converge at different times.
_CELLS = [(512, 10, 28, 0), (36, 10, 88, 1), (4, 10, 16, 2)]
_TS = np.array([0.0, 1.0, 10.0, 100.0, 1000.0, 4000.0])


def _p1(n, m, k, seed):
    return fd.Instance().objective(
        fd.run_key(seed, n, m, 0), n=512, m=10, k=88, d=10, n_true=n, m_true=m, k_true=k
    )


@pytest.mark.parametrize("cell", _CELLS)
def test_stiff_flow_matches_a_tight_explicit_reference(cell):
    obj = _p1(*cell)
    stop = fd.LossBelow(1e-7)
    stiff = fd.solve(
        obj, fd.GradientFlow.stiff(rtol=1e-11, atol=1e-13, max_steps=20_000), t1=4000.0,
        stop=stop, ts=_TS,
    )  # fmt: skip
    ref = fd.solve(obj, fd.GradientFlow.reference(), t1=4000.0, stop=stop, ts=_TS)
    assert stiff.result == ref.result
    # Independent solvers (implicit Kvaerno5 with the Woodbury solve, explicit Dopri8 at 1e-12)
    # agree on the loss at every common save and on the stop time to 1e-6 relative.
    np.testing.assert_array_equal(np.isnan(stiff.loss), np.isnan(ref.loss))
    ok = ~np.isnan(ref.loss)
    np.testing.assert_allclose(stiff.loss[ok], ref.loss[ok], rtol=1e-6)
    np.testing.assert_allclose(float(stiff.stop_time), float(ref.stop_time), rtol=1e-6)
    if cell[0] == 512:
        # Stiff: the explicit reference needs many times the implicit solver's steps.
        assert int(ref.num_steps) > 5 * int(stiff.num_steps)


def test_stiff_flow_refuses_float32_and_explicit_solvers():
    obj = jax.tree_util.tree_map(
        lambda x: x.astype(jnp.float32) if jnp.issubdtype(x.dtype, jnp.floating) else x,
        two_layer_objective(),
    )
    assert obj.dtype == jnp.float32
    with pytest.raises(ValueError, match="stiff flow"):
        fd.solve(obj, fd.GradientFlow.stiff(), t1=1.0)
    with pytest.raises(TypeError, match="implicit Diffrax solver"):
        fd.GradientFlow.stiff(solver=dfx.Tsit5())
    flow = fd.GradientFlow.stiff()
    assert flow.is_stiff and flow.needs_float64
    assert not fd.GradientFlow().is_stiff


def test_matrix_free_fallback_equals_the_structured_solve():
    # The same flow in W (no structure known: GMRES on Jacobian-vector products) and in z.
    t = np.array([0.0, 0.5, 2.0, 8.0])
    flow = fd.GradientFlow.stiff(rtol=1e-10, atol=1e-12, norm="rms")
    runs = [
        fd.solve(two_layer_objective(reduced=r), flow, t1=8.0, ts=t, save_signal=True)
        for r in (True, False)
    ]
    assert all(r.result == fd.RESULTS.successful for r in runs)
    np.testing.assert_allclose(runs[0].loss, runs[1].loss, rtol=1e-7)
    np.testing.assert_allclose(runs[0].signal, runs[1].signal, rtol=1e-6, atol=1e-8)


def test_stiff_flow_in_a_sweep_equals_solve(monkeypatch):
    # Four runs of one shape (one program for the single solves), compacted from 4 to 1.
    monkeypatch.setattr(engine, "_COMPACT_RATIO", 4)
    grid = fd.Grid(n=[6], m=[5], k=[16], seeds=4, d=4)
    flow = fd.GradientFlow.stiff(max_steps=3000)
    ds = fd.sweep(grid, dynamics=flow, t1=500.0, stop=fd.LossBelow(1e-7), progress=False)
    for n in grid.n:
        for seed in range(grid.seeds):
            obj = fd.Instance().objective(fd.run_key(0, n, 5, seed), n=n, m=5, k=16, d=4)
            tr = fd.solve(obj, flow, t1=500.0, stop=fd.LossBelow(1e-7))
            run = ds.sel(n=n, m=5, k=16, seed=seed)
            np.testing.assert_allclose(float(run.final_loss), float(tr.final_loss), rtol=1e-6)
            np.testing.assert_allclose(float(run.stop_time), float(tr.stop_time), rtol=1e-6)
