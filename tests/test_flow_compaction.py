"""Flows in segments: a flow's Diffrax solve cut into segments of solver steps and resumed takes
the very steps of Diffrax's own one-piece solve, and a compacted flow sweep (stopped runs
dropped between segments) records what one vmapped solve per chunk records."""

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import pytest

import flowdip as fd
from flowdip._solve import can_segment, flow_result, flow_run_to, flow_start
from flowdip._sweep import engine, record


INSTANCE = fd.Instance()
STOP = fd.LossBelow(1e-7)
#: (seed, t1) of three runs on n = m = 4, k = 32: one spends its budget before t1 (279 solver
#: steps wanted with Tsit5, 547 with Kvaerno5), one meets the stop rule (66 and 421 steps), one
#: reaches t1 (52 and 234 steps). The budgets below are not multiples of the segments.
RUNS = [(0, 3000.0), (3, 3000.0), (1, 50.0)]
SOLVERS = {
    "Tsit5": (dfx.Tsit5(), 200, (7, 64)),
    "Kvaerno5": (dfx.Kvaerno5(), 450, (13,)),
}


def _flow(name):
    solver, budget, _ = SOLVERS[name]
    return fd.GradientFlow(solver=solver, rtol=1e-6, atol=1e-9, max_steps=budget, norm="max")


def _objective(seed):
    return INSTANCE.objective(fd.run_key(0, 4, 4, seed), n=4, m=4, k=32, d=3)


@eqx.filter_jit
def _diffrax(objective, dynamics, t1):
    """Diffrax's own solve in one piece (what `solve_flow` did before it was segmented)."""
    y0 = dynamics.initial_state(objective, objective.initial_state())
    tol = 1e3 * float(jnp.finfo(objective.dtype).eps)
    event = dfx.Event(
        lambda t, y, args, **kw: STOP.residual(objective.value(dynamics.parameters(y))),
        root_finder=optx.Bisection(rtol=tol, atol=tol, flip=True),
    )
    sol = dfx.diffeqsolve(
        dfx.ODETerm(dynamics.vector_field(objective)),
        dynamics.solver,
        t0=jnp.zeros((), objective.dtype),
        t1=t1,
        dt0=None,
        y0=y0,
        saveat=dfx.SaveAt(t1=True),
        stepsize_controller=dynamics.controller(),
        max_steps=dynamics.max_steps,
        event=event,
        throw=False,
    )
    y = jax.tree_util.tree_map(lambda a: a[-1], sol.ys)
    return sol.ts[-1], y, sol.stats["num_accepted_steps"], sol.result, sol.event_mask


@eqx.filter_jit
def _advance(objective, dynamics, carry, t1, segment):
    target = carry.num_steps + segment
    return flow_run_to(objective, dynamics, carry, target, t1=t1, stop=STOP, segment=segment)


def test_flows_can_be_segmented():
    assert can_segment(fd.GradientFlow.for_sweeps()) and can_segment(fd.ModifiedFlow(0.5))
    assert can_segment(fd.GradientDescent(0.5))


@pytest.mark.parametrize("name", SOLVERS)
def test_one_piece_flow_is_diffraxs_own_solve(name):
    # `solve_flow` starts, runs and reads out a flow with the segment functions, in one
    # segment of the whole budget: bit for bit Diffrax's own solve, implicit solver included.
    dynamics = _flow(name)
    codes, ends = [], []
    for seed, t1 in RUNS:
        obj = _objective(seed)
        t, y, accepted, result, event = _diffrax(obj, dynamics, jnp.asarray(t1))
        traj = fd.solve(obj, dynamics, t1=t1, stop=STOP, throw=False, num_saves=3)
        assert float(traj.stop_time) == float(t)
        assert np.array_equal(traj.final_state, y)
        assert int(traj.num_steps) == int(accepted)
        expected = "converged" if bool(event) else "max_steps_reached"
        assert traj.result == getattr(fd.RESULTS, expected)
        # Saves past the stop are invalid.
        assert np.array_equal(traj.valid, np.asarray(traj.ts) <= float(t))
        codes.append((expected, result == dfx.RESULTS.max_steps_reached))
        ends.append(float(t) / t1)
    # The three runs end on the budget (before t1), on the stop rule, and at t1.
    assert codes == [
        ("max_steps_reached", True),
        ("converged", False),
        ("max_steps_reached", False),
    ]
    assert ends[0] < 1 and ends[1] < 1 and ends[2] == 1


@pytest.mark.parametrize("name", SOLVERS)
def test_segments_take_the_steps_of_one_piece(name):
    dynamics = _flow(name)
    budget = dynamics.max_steps
    for segment in SOLVERS[name][2]:
        for seed, t1 in RUNS:
            obj = _objective(seed)
            whole = fd.solve(obj, dynamics, t1=t1, stop=STOP, throw=False, num_saves=2)
            carry, pieces = flow_start(obj, dynamics, t1=t1), 0
            while not bool(carry.done):
                carry = _advance(obj, dynamics, carry, jnp.asarray(t1), segment)
                pieces += 1
                assert int(carry.num_steps) <= min(pieces * segment, budget)
            assert pieces == -(-int(carry.num_steps) // segment)
            assert float(carry.t) == float(whole.stop_time)
            assert np.array_equal(carry.y, whole.final_state)
            assert int(carry.num_accepted) == int(whole.num_steps)
            loss = obj.value(dynamics.parameters(carry.y))
            assert flow_result(carry, loss, stop=STOP) == whole.result
            if whole.result == fd.RESULTS.max_steps_reached and float(whole.stop_time) < t1:
                assert int(carry.num_steps) == budget  # the budget ends it mid-segment


def test_compacted_flow_sweep_equals_one_vmapped_solve(monkeypatch):
    # This grid's flows stop anywhere between 71 and 586 solver steps (budget 2000, segments
    # of 63): the chunk of 8 shrinks to its last runs.
    grid = fd.Grid(n=[4, 8], m=[4], k=[32, 128], seeds=2, d=3)
    kwargs = dict(
        dynamics=fd.GradientFlow.for_sweeps(max_steps=2000),
        t1=3000.0,
        stop=STOP,
        progress=False,
        chunk_size=8,
    )
    real, sizes = engine._gather_lanes, []

    def spy(lanes, idx):
        sizes.append(len(idx))
        return real(lanes, idx)

    monkeypatch.setattr(engine, "_gather_lanes", spy)
    # Batches 8 then 2 rather than every halving: the same mechanism, fewer programs to compile.
    monkeypatch.setattr(engine, "_COMPACT_RATIO", 4)
    compacted = fd.sweep(grid, **kwargs)
    assert sizes and min(sizes) == 2
    steps = compacted.num_steps.values
    assert steps.min() < 2 * 63 and steps.max() > 4 * 63
    codes = set(np.unique(compacted.result.values).astype(int))
    assert codes == {int(fd.RESULTS.converged._value), int(fd.RESULTS.max_steps_reached._value)}
    plain = fd.sweep(grid, compact=False, **kwargs)
    # The runs take the same steps: codes, step counts and stop times agree bit for bit; the
    # recovery error is read out in batches of another size (round-off of `x`), and so is the
    # final loss (bit for bit with JAX 0.10.2; to 1.5e-12 with the oldest JAX supported).
    for name in record.VARIABLES:
        a, b = compacted[name].values, plain[name].values
        if name in ("recovery_error", "final_loss"):
            assert np.allclose(a, b, rtol=1e-11, atol=0), name
        else:
            assert np.array_equal(a, b), name


def test_a_run_ending_on_its_budget_beside_a_converged_one_keeps_its_state():
    # Under vmap, once one run's stop rule fires Diffrax root-finds every run and returns, for
    # a run without an event, the interpolant of its last step at that step's end: for a run
    # whose last step (here its 80th, on the budget) was rejected, a time it never reached
    # (384.5 for 374.5) and a state it never had. The carry holds the loop's own state.
    dynamics = fd.GradientFlow.for_sweeps(max_steps=80)

    def one(key):
        obj = INSTANCE.objective(key, n=4, m=4, k=32, d=3)
        traj = fd.solve(obj, dynamics, t1=3000.0, stop=STOP, throw=False, num_saves=1)
        return traj.stop_time, traj.final_loss, traj.result._value

    keys = jnp.stack([fd.run_key(0, 4, 4, s) for s in (0, 3)])
    times, losses, codes = eqx.filter_jit(jax.vmap(one))(keys)
    assert list(codes) == [fd.RESULTS.max_steps_reached._value, fd.RESULTS.converged._value]
    time, loss, _ = eqx.filter_jit(one)(keys[0])
    # A batched product's round-off differs from an unbatched one's.
    assert np.isclose(times[0], time, rtol=1e-9) and np.isclose(losses[0], loss, rtol=1e-8)
