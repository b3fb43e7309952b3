"""Reachable measurements of the two-layer DIP: the margin and distance against an exact
convex hull (tiny k, m = 2), the loss bound against runs that converge and runs that cannot,
the sweep's per-run recording against the function, and refused inputs."""

import itertools
import json
import math
import warnings

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
import scipy.optimize
import scipy.spatial
from helpers import two_layer_objective

import flowdip as fd
from flowdip._analysis.reachability import loss_at_distance, MARGIN_CAP
from flowdip._sweep import record


# -- an independent computation: the zonotope as the convex hull of its 2^k vertices ----------
def _hull(B, lower, upper):
    vertices = np.asarray(
        [B @ np.asarray(v) for v in itertools.product((lower, upper), repeat=B.shape[1])]
    )
    return scipy.spatial.ConvexHull(vertices)


def _hull_distance(hull, y):
    """Exact distance from `y` to a convex polygon (0 inside): the nearest of its edges."""
    if np.all(hull.equations[:, :2] @ y + hull.equations[:, 2] <= 0):
        return 0.0
    best = math.inf
    for i, j in hull.simplices:
        a, b = hull.points[i], hull.points[j]
        s = np.clip(np.dot(y - a, b - a) / np.dot(b - a, b - a), 0.0, 1.0)
        best = min(best, float(np.linalg.norm(a + s * (b - a) - y)))
    return best


def _points(B, lower, upper, rng):
    """Points inside, far outside, and 1e-5 either side of the middle of an edge."""
    hull = _hull(B, lower, upper)
    inside = B @ rng.uniform(
        lower + 0.1 * (upper - lower), upper - 0.1 * (upper - lower), B.shape[1]
    )
    eq = hull.equations[0]
    i, j = hull.simplices[0]
    mid = (hull.points[i] + hull.points[j]) / 2
    scale = np.ptp(hull.points, axis=0).max()
    return hull, [
        inside,
        mid + 3 * scale * eq[:2],
        mid - 1e-5 * scale * eq[:2],
        mid + 1e-5 * scale * eq[:2],
    ]


@pytest.mark.parametrize("k", [2, 3, 4, 5])
@pytest.mark.parametrize("activation", [fd.Sigmoid(), fd.Tanh()], ids=["sigmoid", "tanh"])
def test_box_ranges_against_the_convex_hull_of_the_vertices(k, activation):
    rng = np.random.default_rng(k)
    lower, upper = activation.range
    B = rng.standard_normal((2, k))
    hull, points = _points(B, lower, upper, rng)
    batch = fd.reachability_batch(
        B[None].repeat(len(points), 0), np.stack(points), activation.range
    )
    assert batch.solved.all()
    expected_inside = [True, False, True, False]
    for j, y in enumerate(points):
        exact = _hull_distance(hull, y)
        assert (exact == 0) == expected_inside[j]
        assert bool(batch.reachable[j]) == expected_inside[j], j
        # Distances to 1e-9 relative (BVLS is exact up to round-off; the hull too).
        np.testing.assert_allclose(batch.distance[j], exact, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(batch.loss_bound[j], 0.5 * exact**2, rtol=1e-8, atol=1e-14)
    # The margin is where y leaves the hull of the shrunk box [lower + t, upper − t]^k.
    y = points[0]
    t = float(batch.margin[0])
    assert 0 < t < (upper - lower) / 2
    for shift, inside in ((-1e-5, True), (1e-5, False)):
        shrunk = _hull(B, lower + t + shift, upper - t - shift)
        assert (_hull_distance(shrunk, y) == 0) == inside
    # A point outside: the box must grow by −margin on each side to take it in.
    y, t = points[1], float(batch.margin[1])
    assert t < 0
    for shift, inside in ((-1e-5, True), (1e-5, False)):
        grown = _hull(B, lower + t + shift, upper - t - shift)
        assert (_hull_distance(grown, y) == 0) == inside


def test_a_cone_against_nonnegative_least_squares():
    # Softplus: Z̄ = {B h : h ≥ 0}, a cone. Columns in the positive quadrant make it pointed.
    rng = np.random.default_rng(0)
    for k in (2, 3, 5):
        B = np.abs(rng.standard_normal((2, k)))
        ys = [B @ rng.uniform(0.5, 2.0, k), np.asarray([-1.0, -2.0]), np.asarray([3.0, -0.5])]
        batch = fd.reachability_batch(np.stack([B] * 3), np.stack(ys), fd.Softplus().range)
        for j, y in enumerate(ys):
            _, exact = scipy.optimize.nnls(B, y)
            assert bool(batch.reachable[j]) == (j == 0)
            np.testing.assert_allclose(batch.distance[j], exact, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(batch.loss_bound[j], 0.5 * exact**2, rtol=1e-8, atol=1e-14)
        # Inside, the margin is the largest t with y = B h, h ≥ t: capped, or where y = t·B1
        # plus a point of the cone's boundary.
        assert 0 < batch.margin[0] <= MARGIN_CAP
    # A cone with a positive null vector is all of its span: the margin hits the cap.
    B = np.asarray([[1.0, -1.0, 0.0], [0.0, 0.0, 1.0]])
    got = fd.reachability_batch(B[None], np.asarray([[-5.0, 3.0]]), (0.0, math.inf))
    assert bool(got.reachable[0]) and float(got.margin[0]) == pytest.approx(MARGIN_CAP)
    # An upper-bounded range is the mirror image.
    ys = np.asarray([[-1.0, -1.0], [1.0, 1.0]])
    up = fd.reachability_batch(np.stack([np.eye(2)] * 2), ys, (-math.inf, 0.0))
    np.testing.assert_array_equal(up.reachable, [True, False])
    np.testing.assert_allclose(up.distance, [0.0, math.sqrt(2)], rtol=1e-12)


def test_out_of_the_range_of_B_and_padded_instances():
    B = np.asarray([[1.0, 2.0], [2.0, 4.0], [0.0, 0.0]])  # rank one
    y = np.asarray([0.5, 0.0, 0.0])
    got = fd.reachability_batch(B[None], y[None], (0.0, 1.0))
    assert float(got.margin[0]) == -math.inf and not got.reachable[0]
    # dist to the segment {s (1, 2, 0) : s ∈ [0, 3]}: the projection of y, clipped.
    s = np.clip(y @ B[:, 0] / 5, 0, 3)
    np.testing.assert_allclose(got.distance[0], np.linalg.norm(y - s * B[:, 0]), rtol=1e-12)
    # Zero rows and columns beyond `sizes` are not read: the same as the trimmed instance.
    rng = np.random.default_rng(1)
    Bs, ys = rng.standard_normal((2, 3, 6)), 3 * rng.standard_normal((2, 3))
    padded = np.zeros((2, 5, 9))
    padded[:, :3, :6] = Bs
    padded[:, 3:, 6:] = 7.0  # junk that must be ignored
    yp = np.concatenate([ys, np.full((2, 2), 5.0)], axis=1)
    a = fd.reachability_batch(padded, yp, (0, 1), sizes=np.asarray([[3, 6], [3, 6]]))
    b = fd.reachability_batch(Bs, ys, (0, 1))
    for name in ("margin", "distance", "loss_bound"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_loss_bound_of_each_loss_is_a_lower_bound():
    rng = np.random.default_rng(2)
    losses = [fd.MSE(), fd.PowerLoss(1.5), fd.PowerLoss(3.0), fd.Huber(0.3), fd.PseudoHuber(0.3)]
    for loss in losses:
        for d in (0.05, 0.3, 2.0):
            at_one = float(loss(jnp.asarray([d, 0.0, 0.0]), jnp.zeros(3)))
            assert float(loss_at_distance(loss, np.asarray(d))) == pytest.approx(at_one, rel=1e-12)
            r = rng.standard_normal((200, 3))
            r = d * r / np.linalg.norm(r, axis=1, keepdims=True)
            values = np.asarray([float(loss(jnp.asarray(v), jnp.zeros(3))) for v in r])
            assert values.min() >= at_one * (1 - 1e-12), type(loss).__name__

    # A loss it does not know: no bound.
    class Odd(fd.MSE):
        pass

    assert math.isnan(float(loss_at_distance(Odd(), np.asarray(1.0))))


# -- against runs ------------------------------------------------------------------------------
def _scaled(objective, factor):
    problem = eqx.tree_at(lambda p: p.y, objective.problem, factor * objective.problem.y)
    return fd.Objective(problem, objective.generator, objective.loss)


def test_runs_that_converge_were_reachable_and_unreachable_runs_stay_above_the_bound():
    tol = 1e-6
    flow = fd.GradientFlow(rtol=1e-8, atol=1e-10)
    converged = 0
    for seed in range(4):
        obj = two_layer_objective(seed, m=3, n=8, k=60, d=4)
        reach = fd.reachability(obj)
        runs = [
            fd.solve(
                obj, fd.GradientDescent(1.0), num_steps=3000, stop=fd.LossBelow(tol), throw=False
            ),
            fd.solve(obj, flow, t1=3000.0, stop=fd.LossBelow(tol), throw=False),
        ]
        for traj in runs:
            if bool(traj.result == fd.RESULTS.converged):
                converged += 1
                assert bool(reach.reachable) and float(reach.loss_bound) <= tol
        # Far outside: the bound is positive, every run fails and stays above it.
        far = _scaled(obj, 40.0)
        out = fd.reachability(far)
        assert not out.reachable and bool(out.rules_out(tol)) and out.loss_bound > 0
        for dyn, kw in ((fd.GradientDescent(1.0), dict(num_steps=2000)), (flow, dict(t1=2000.0))):
            traj = fd.solve(far, dyn, stop=fd.LossBelow(tol), num_saves=50, throw=False, **kw)
            assert not bool(traj.result == fd.RESULTS.converged)
            losses = np.asarray(traj.loss)[np.asarray(traj.valid)]
            assert losses.min() >= float(out.loss_bound) * (1 - 1e-9)
            # ... and the bound is nearly met: descent in z approaches the nearest point.
            assert float(traj.final_loss) <= 1.5 * float(out.loss_bound)
    assert converged >= 4  # the check above was exercised


def test_reachability_reads_the_objective():
    obj = two_layer_objective(0, m=3, n=8, k=30, d=4, activation=fd.Tanh())
    a = fd.reachability(obj)
    b = fd.reachability(
        two_layer_objective(0, m=3, n=8, k=30, d=4, activation=fd.Tanh(), reduced=False)
    )
    assert (a.lower, a.upper) == (-1.0, 1.0)
    for name in ("margin", "distance", "loss_bound"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-10)
    batch = fd.reachability_batch(np.asarray(obj.B)[None], np.asarray(obj.problem.y)[None], (-1, 1))
    np.testing.assert_allclose(batch.margin[0], a.margin, rtol=1e-12)
    # A masked net is the net of its live neurons.
    net = obj.generator
    mask = jnp.asarray((np.arange(30) < 20).astype(float))
    masked = fd.Objective(
        obj.problem, eqx.tree_at(lambda g: g.mask, net, mask, is_leaf=lambda x: x is None)
    )
    small = fd.Objective(
        obj.problem,
        fd.TwoLayerDIP(u=net.u, W=net.W[:20], V=net.V[:, :20], activation=net.activation),
    )
    np.testing.assert_allclose(
        fd.reachability(masked).margin, fd.reachability(small).margin, rtol=1e-9
    )
    # The huber loss bound follows the loss.
    hub = fd.reachability(
        _scaled(two_layer_objective(0, m=3, n=8, k=30, d=4, loss=fd.Huber(0.5)), 40.0)
    )
    assert float(hub.loss_bound) == pytest.approx(0.5 * (float(hub.distance) - 0.25), rel=1e-9)


# -- sweeps --------------------------------------------------------------------------------------
GRID = fd.Grid(n=[6], m=[3, 4], k=[5, 12], seeds=2, d=3)  # one bucket: padded runs
INSTANCE = fd.Instance()
SWEEP = dict(
    dynamics=fd.GradientDescent(0.5),
    num_steps=100,
    stop=fd.LossBelow(1e-6),
    instance=INSTANCE,
    progress=False,
    chunk_size=4,
)


def test_sweep_records_the_reachability_of_each_run(tmp_path):
    ds = fd.sweep(GRID, reachability=True, out=tmp_path / "new", **SWEEP)
    assert set(record.REACHABILITY) <= set(ds.data_vars) and "sharpness0" in ds.data_vars
    assert json.loads(ds.attrs["config"])["diagnostics"] == record.DIAGNOSTICS_VERSION
    for n, m, k, s in itertools.product(GRID.n, GRID.m, GRID.k, range(GRID.seeds)):
        obj = INSTANCE.objective(fd.run_key(0, n, m, s), n=n, m=m, k=k, d=GRID.d)
        want = fd.reachability(obj)
        cell = ds.sel(n=n, m=m, k=k, seed=s)
        # The sweep's B is drawn padded: equal up to round-off.
        for name in ("margin", "distance", "loss_bound"):
            np.testing.assert_allclose(
                float(cell[f"reach_{name}"]), float(getattr(want, name)), rtol=1e-9, atol=1e-12
            )
        # A true lower bound of the run's final loss.
        assert float(cell.final_loss) >= float(cell.reach_loss_bound) * (1 - 1e-9)
    assert (ds.reach_margin < 0).any() and (ds.reach_loss_bound > 0).any()
    # Resumed from the folder: the same numbers; and the standalone function agrees.
    again = fd.sweep(GRID, reachability=True, out=tmp_path / "new", **SWEEP)
    alone = fd.sweep_reachability(GRID, instance=INSTANCE, progress=False)
    for name in record.REACHABILITY:
        np.testing.assert_array_equal(again[name].values, ds[name].values)
        np.testing.assert_allclose(alone[name].values, ds[name].values, rtol=1e-12, atol=1e-14)
    assert not set(record.REACHABILITY) & set(record.variables(False) + record.variables(True))


def test_a_folder_begun_without_reachability_resumes_without_it(tmp_path):
    out = tmp_path / "old"
    old = fd.sweep(GRID, diagnostics=True, out=out, shard=(0, 2), **SWEEP)
    assert json.loads(old.attrs["config"])["diagnostics"] is True
    assert not set(record.REACHABILITY) & set(old.data_vars)
    with pytest.warns(UserWarning, match="resumes without reach_margin"):
        done = fd.sweep(GRID, reachability=True, out=out, **SWEEP)
    assert bool(done.attrs["complete"]) and not set(record.REACHABILITY) & set(done.data_vars)
    assert "sharpness0" in done.data_vars
    merged = fd.merge_sweeps([out])
    np.testing.assert_array_equal(merged.final_loss.values, done.final_loss.values)
    # A fresh folder records them, and never mixes with the old one.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = fd.sweep(GRID, reachability=True, out=tmp_path / "fresh", **SWEEP)
    assert set(record.REACHABILITY) <= set(new.data_vars)
    with pytest.raises(ValueError, match="different arguments"):
        fd.merge_sweeps([out, tmp_path / "fresh"])


# -- refused inputs ------------------------------------------------------------------------------
class _NoRange(fd.Sigmoid):
    @property
    def range(self):
        return None


class _Everywhere(fd.Sigmoid):
    @property
    def range(self):
        return (-math.inf, math.inf)


def test_bad_input_is_refused_naming_what_is_wrong():
    key = jr.key(0)
    problem = fd.InverseProblem.compressed_sensing(key, 3, 6)
    mlp = fd.MLP.init(key, d=3, widths=[5], n=6)
    with pytest.raises(TypeError, match="MLP"):
        fd.reachability(fd.Objective(problem, mlp))
    both = fd.TwoLayerDIP.init(key, d=3, k=8, n=6, train_V=True)
    with pytest.raises(ValueError, match="train_V"):
        fd.reachability(fd.Objective(problem, both))
    with pytest.raises(TypeError, match="Objective"):
        fd.reachability(problem)
    for act, match in ((_NoRange(), "unknown"), (_Everywhere(), "all of ℝ")):
        net = fd.TwoLayerDIP.init(key, d=3, k=8, n=6, activation=act)
        with pytest.raises(ValueError, match=match):
            fd.reachability(fd.Objective(problem, net))
    B, y = np.ones((1, 2, 3)), np.ones((1, 2))
    for bad in ((1.0, 0.0), (0.0, math.nan), (-math.inf, math.inf)):
        with pytest.raises(ValueError, match="value_range"):
            fd.reachability_batch(B, y, bad)
    with pytest.raises(ValueError, match="sizes"):
        fd.reachability_batch(B, y, (0, 1), sizes=np.asarray([[3, 3]]))
    with pytest.raises(TypeError, match="loss"):
        fd.reachability_batch(B, y, (0, 1), loss="mse")
    with pytest.raises(TypeError, match="tol"):
        fd.reachability(two_layer_objective(0, m=2, n=4, k=6, d=3)).rules_out("1e-7")
    assert fd.Sigmoid().range == (0.0, 1.0) and fd.Tanh().range == (-1.0, 1.0)
    assert fd.Softplus().range == (0.0, math.inf)


def test_the_unreachable_stop_rule_ends_certified_runs_at_once_and_leaves_others_alone():
    tol = 1e-6
    obj = two_layer_objective(1, m=3, n=8, k=60, d=4)
    far = _scaled(obj, 40.0)
    flow = fd.GradientFlow(rtol=1e-8, atol=1e-10)
    for dyn, kw in ((fd.GradientDescent(1.0), dict(num_steps=500)), (flow, dict(t1=500.0))):
        # Certified: the run ends before its first step, with its own result code.
        rule = fd.reachability(far).stop_rule(tol)
        assert bool(rule.unreachable())
        traj = fd.solve(far, dyn, stop=rule, **kw)
        assert traj.result == fd.RESULTS.unreachable
        assert int(traj.num_steps) == 0 and float(traj.stop_time) == 0.0
        assert float(traj.final_loss) == float(traj.initial_loss)
        # Not certified: exactly the run of LossBelow(tol).
        rule = fd.reachability(obj).stop_rule(tol)
        assert not bool(rule.unreachable())
        mine = fd.solve(obj, dyn, stop=rule, throw=False, **kw)
        plain = fd.solve(obj, dyn, stop=fd.LossBelow(tol), throw=False, **kw)
        assert mine.result == plain.result
        assert int(mine.num_steps) == int(plain.num_steps)
        np.testing.assert_array_equal(mine.loss, plain.loss)
    with pytest.raises(ValueError, match="tol"):
        fd.LossBelowOrUnreachable(0.0, 1.0)
    with pytest.raises(ValueError, match="scalar"):
        fd.LossBelowOrUnreachable(1e-6, jnp.ones(2))
