"""The modified flow, inertial dynamics and baselines in `sweep` (vmapped over seeds and
padded widths).

Each case compiles a whole batched program (about 12 s of CPU here), so the cases are the
distinct kinds of state: a flow with Hessian-vector products through the padding mask (also
checked against an unpadded run), a flow with a tuple state, and a discrete dynamics carrying
an Optimistix solver state. `InertialDescent` (a tuple state, like `InertialFlow`, on the
discrete loop, like BFGS) adds nothing these do not cover.
"""

import jax.numpy as jnp
import numpy as np
import pytest

import flowdip as fd
from flowdip._sweep import record


GRID = fd.Grid(n=[6], m=[3], k=[8, 16], seeds=2, d=3)
INSTANCE = fd.Instance(scaling="1/m")


@pytest.mark.parametrize(
    "dynamics, horizon, padded",
    [
        (fd.ModifiedFlow(0.5), 5.0, True),
        pytest.param(fd.InertialFlow(2.0, 0.5), 5.0, False, marks=pytest.mark.slow),
        pytest.param(fd.OptimistixBaseline.bfgs(), 10, False, marks=pytest.mark.slow),
    ],
    ids=lambda x: type(x).__name__,
)
def test_sweep_runs_and_padding_changes_nothing(dynamics, horizon, padded):
    is_flow = isinstance(dynamics, fd.AbstractFlow)
    kwargs = dict(t1=horizon) if is_flow else dict(num_steps=horizon)
    ds = fd.sweep(GRID, dynamics=dynamics, instance=INSTANCE, progress=False, **kwargs)
    codes = ds["result"].values
    assert np.all(codes == int(fd.RESULTS.successful._value))
    assert np.all(ds.final_loss.values < ds.initial_loss.values)
    assert set(record.VARIABLES) <= set(ds.data_vars)
    if not padded:
        return
    # The k = 8 cells ran padded to k = 16 (masked neurons, Hessian-vector products through
    # the mask): compare one with an unpadded run.
    key = fd.run_key(0, 6, 3, 1)
    plain = fd.run_cell(INSTANCE, dynamics, key=key, n=6, m=3, k=8, d=3, horizon=horizon)
    cell = ds.sel(n=6, m=3, k=8, seed=1)
    for name in ("final_loss", "stop_time", "recovery_error"):
        assert jnp.isclose(plain[name], float(cell[name]), rtol=1e-9, atol=1e-13), name
