"""Which measurements the two-layer DIP can reach at all (docs/theory.md §5.3).

On the reduced path the measurements are `A g(u, W) = B φ(z)` with `z ∈ ℝᵏ` free, so they
fill the set `Z = {B h : h ∈ (lower, upper)ᵏ}` for the activation's range `(lower, upper)`.
A linear program says whether `y ∈ Z` and by what margin; a bound-constrained least squares
gives `dist(y, Z̄)` and, through its dual, a lower bound on the loss of every run. Host-side
(SciPy's HiGHS and BVLS), not jittable.
"""

import math

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from .._dynamics import LossBelowOrUnreachable
from .._generator.activations import AbstractActivation
from .._generator.networks import TwoLayerDIP
from .._losses import AbstractLoss, Huber, MSE, PowerLoss, PseudoHuber
from .._objective import Objective
from .._typing import ArrayLike, Bool, check_real, checked, Float, Int


#: The margin of a one-sided range is capped here (in units of `φ`'s values): without a cap
#: the program is unbounded whenever `B` has a positive null vector.
MARGIN_CAP = 1.0
# Relative size below which an entry of `Bᵀλ` counts as the round-off of a zero (it matters
# only against an infinite bound, where a zero would otherwise turn into `±inf`).
_ROUNDOFF = 1e-10
# The dual bound may fall short of the solver's distance by this (relative) before the solve
# counts as failed.
_GAP = 1e-6


class Reachability(eqx.Module):
    """Whether the measurements `y` can be reached by the two-layer DIP, from
    [`flowdip.reachability`][] (scalar fields) or [`flowdip.reachability_batch`][] (one entry
    per instance).

    **Fields:**

    - `margin`: the largest `t` with `B h = y` for some `h` with `lower + t ≤ hᵢ ≤ upper − t`
      (only the finite side shifts for a one-sided range, and `t` is capped at half the
      range's width, or at 1 for a one-sided range, whose program is otherwise unbounded).
      Positive exactly when `y ∈ Z`; negative when the box must grow by `−t` to reach `y`;
      `−inf` when `y` is not in the range of `B` at all.
    - `reachable`: `margin > 0`: some `z` gives `B φ(z) = y`.
    - `distance`: `dist(y, Z̄)` (the solver's value, so an upper estimate); 0 when reachable.
    - `loss_bound`: a lower bound on `ℓ_y(B φ(z))` for every `z`, hence on the loss of every run
      at every time: `ℓ` evaluated at a residual of norm `dist(y, Z̄)` on one coordinate, with
      the distance from the least squares' dual (a certified lower bound of it). Exact for
      [`flowdip.MSE`][] (`½ dist²`) and [`flowdip.PowerLoss`][] (`dist^p/p`), a lower bound for
      [`flowdip.Huber`][] and [`flowdip.PseudoHuber`][] (a sum of `ρ(|rᵢ|)` with `ρ(√s)`
      concave is at least `ρ(‖r‖)`); NaN for other losses, of which nothing is known.
    - `solved`: whether the solvers succeeded (the other fields are NaN where they did not).
    - `lower`, `upper`: the activation's range.
    """

    margin: Float[np.ndarray, "*batch"]
    reachable: Bool[np.ndarray, "*batch"]
    distance: Float[np.ndarray, "*batch"]
    loss_bound: Float[np.ndarray, "*batch"]
    solved: Bool[np.ndarray, "*batch"]
    lower: float = eqx.field(static=True)
    upper: float = eqx.field(static=True)

    def rules_out(self, tol: float) -> Bool[np.ndarray, "*batch"]:
        """Whether the stop rule `LossBelow(tol)` can never be met: `loss_bound ≥ tol`, so the
        loss stays at or above `tol` along every run (False where nothing is certified)."""
        tol = check_real("tol", tol)
        return np.asarray(self.loss_bound >= tol)

    def stop_rule(self, tol: float) -> LossBelowOrUnreachable:
        """`LossBelow(tol)` that ends the run at once, with result `unreachable`, where this
        certificate rules it out (for one objective, not a batch)."""
        bound = np.asarray(self.loss_bound, dtype=float)
        if bound.shape != ():
            raise ValueError(
                "stop_rule needs the reachability of one objective; got a batch of shape "
                f"{bound.shape}."
            )
        return LossBelowOrUnreachable(tol, jnp.asarray(bound))


def activation_range(activation: AbstractActivation) -> tuple[float, float]:
    """The range `(lower, upper)` of `activation`, refused unless one side is finite.

    **Raises:** `ValueError` if the range is unknown (`activation.range` is `None`), not a
    pair with `lower < upper`, or all of `ℝ` (then every `y` in the range of `B` is reached and
    there is nothing to certify).
    """
    value = getattr(activation, "range", None)
    name = type(activation).__name__
    if value is None:
        raise ValueError(
            f"The range of the activation {name} is unknown (its `range` is None); give the "
            "class a `range` property returning (lower, upper) to use reachability."
        )
    return check_range(value, f"{name}.range")


def check_range(value, name: str = "value_range") -> tuple[float, float]:
    """`value` as `(lower, upper)` floats, refused unless `lower < upper` with one side finite."""
    if isinstance(value, str | bytes) or not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(f"{name} must be a pair (lower, upper); got {name}={value!r}.")
    lower, upper = (check_real(name, v) for v in value)
    if math.isnan(lower) or math.isnan(upper) or not lower < upper:
        raise ValueError(f"{name} must have lower < upper; got {name}={value!r}.")
    if math.isinf(lower) and math.isinf(upper):
        raise ValueError(
            f"{name} is all of ℝ ({value!r}): every y in the range of B is then reached, so "
            "reachability certifies nothing."
        )
    return lower, upper


def loss_at_distance(
    loss: AbstractLoss, distance: Float[np.ndarray, "*batch"]
) -> Float[np.ndarray, "*batch"]:
    """A lower bound of the loss at residuals of norm at least `distance`, attained for the MSE
    and the power loss (see `Reachability.loss_bound`); NaN for losses other than flowdip's."""
    d = np.asarray(distance, np.float64)
    kind = type(loss)
    if kind is MSE:
        value = 0.5 * d * d
    elif kind is PowerLoss:
        value = d**loss.p / loss.p
    elif kind is Huber:
        delta = loss.delta
        value = np.where(d <= delta, 0.5 * d * d, delta * (d - 0.5 * delta))
    elif kind is PseudoHuber:
        # δ²(√(1 + d²/δ²) − 1), in the form without cancellation.
        value = d * d / (np.sqrt(1 + (d / loss.delta) ** 2) + 1)
    else:
        value = np.full_like(d, np.nan)
    return np.asarray(value)


def _margin(B: np.ndarray, y: np.ndarray, lower: float, upper: float) -> tuple[float, str]:
    """The margin LP; returns `(margin, "")` or `(nan, why)`."""
    m, k = B.shape
    if math.isinf(lower):  # (−∞, upper): the same as (−upper, ∞) for −B.
        return _margin(-B, y, -upper, math.inf)
    ones = B.sum(axis=1)
    if math.isinf(upper):
        # h = lower + t + w, w ≥ 0: B w + t B1 = y − lower·B1, maximise t.
        A_eq = np.hstack([B, ones[:, None]])
        b_eq = y - lower * ones
        bounds = np.column_stack([np.zeros(k + 1), np.full(k + 1, np.inf)])
        bounds[-1] = -np.inf, MARGIN_CAP
        res = _linprog(A_eq, b_eq, bounds)
        if res.status == 2:  # infeasible: y is not in the range of B
            return -math.inf, ""
        return (float(res.x[-1]), "") if res.status == 0 else (math.nan, _why(res))
    # Two-sided: with centre c and half-width r, y − c·B1 = ρ B v for some |vᵢ| ≤ 1 at the
    # least ρ (the gauge of the zonotope), and the margin is r − ρ. Maximising s = 1/ρ in
    # B v = s (y − c·B1) keeps every bound simple (HiGHS' fastest form).
    centre, half = (lower + upper) / 2, (upper - lower) / 2
    b = y - centre * ones
    if not np.any(b):
        return half, ""
    A_eq = np.hstack([B, -b[:, None]])
    bounds = np.column_stack([np.full(k + 1, -1.0), np.ones(k + 1)])
    bounds[-1] = 0.0, 1e12 / half
    res = _linprog(A_eq, np.zeros(m), bounds)
    if res.status != 0:
        return math.nan, _why(res)
    s = float(res.x[-1])
    return (half - 1 / s if s > 0 else -math.inf), ""


def _linprog(A_eq, b_eq, bounds):
    cost = np.zeros(A_eq.shape[1])
    cost[-1] = -1.0  # maximise the last variable
    # Presolve only costs time on a dense program of m rows.
    return scipy.optimize.linprog(
        cost,
        A_eq=A_eq,
        b_eq=b_eq,
        bounds=bounds,
        method="highs-ds",
        options=dict(presolve=False),
    )


def _why(res) -> str:
    return f"status {res.status}: {res.message}"


def _distance(B, y, lower, upper) -> tuple[float, float, str]:
    """`(distance, certified lower bound of it, "")` by BVLS and its dual, or NaNs and why."""
    res = scipy.optimize.lsq_linear(B, y, bounds=(lower, upper), method="bvls")
    if res.status < 1:
        return math.nan, math.nan, f"least squares {_why(res)}"
    lam = y - B @ res.x
    dist = float(np.linalg.norm(lam))
    if dist == 0:
        return 0.0, 0.0, ""
    # Weak duality: for any λ, dist(y, Z̄) ≥ (⟨λ, y⟩ − sup_{h ∈ box} ⟨Bᵀλ, h⟩)/‖λ‖; at the
    # optimum's residual the two sides agree.
    g = B.T @ lam
    g = np.where(np.abs(g) <= _ROUNDOFF * dist * np.linalg.norm(B, axis=0), 0.0, g)
    with np.errstate(invalid="ignore"):
        support = np.sum(np.where(g > 0, upper * g, np.where(g < 0, lower * g, 0.0)))
    lower_bound = max(0.0, float((lam @ y - support) / dist))
    if not dist - lower_bound <= _GAP * max(1.0, dist, float(np.linalg.norm(y))):
        return dist, math.nan, f"least squares stopped {dist - lower_bound:.3e} from optimal"
    return dist, lower_bound, ""


def _solve_one(B, y, lower, upper) -> tuple[float, float, float, str]:
    """`(margin, distance, distance lower bound, why-failed)` for one instance."""
    margin, why = _margin(B, y, lower, upper)
    if why:
        return math.nan, math.nan, math.nan, f"margin LP {why}"
    if margin > 0:
        return margin, 0.0, 0.0, ""
    dist, dist_low, why = _distance(B, y, lower, upper)
    return margin, dist, dist_low, why


def _result(margin, dist, dist_low, loss, lower, upper) -> Reachability:
    margin, dist, dist_low = (np.asarray(v, np.float64) for v in (margin, dist, dist_low))
    solved = ~np.isnan(margin) & ~np.isnan(dist_low)
    return Reachability(
        margin=np.where(solved, margin, np.nan),
        reachable=np.asarray(solved & (margin > 0)),
        distance=np.where(solved, dist, np.nan),
        loss_bound=np.where(solved, loss_at_distance(loss, dist_low), np.nan),
        solved=np.asarray(solved),
        lower=lower,
        upper=upper,
    )


def reachability(objective: Objective) -> Reachability:
    """Whether the two-layer DIP can reach the measurements `y` at all, and if not, how far
    they lie from what it can reach (docs/theory.md §5.3).

    One linear program (HiGHS) gives the margin; when it is not positive, a bound-constrained
    least squares (BVLS) gives `dist(y, Z̄)` and its dual a certified lower bound on the loss
    of every run (`rules_out(tol)`: no run can meet `LossBelow(tol)`). At `m = 40`,
    `k = 8192` a margin takes about a second and a distance a few more.

    **Arguments:** `objective`, an [`flowdip.Objective`][] of a [`flowdip.TwoLayerDIP`][]
    that trains only `W` (the reduced path; `y`, `B` and the loss are read from it).

    **Returns:** a [`flowdip.Reachability`][] with scalar fields.

    **Raises:** `TypeError` for another objective or generator; `ValueError` for a net that
    trains `V` or an activation whose range is unknown or all of `ℝ`; `RuntimeError` if a
    solver fails.
    """
    if not isinstance(objective, Objective):
        raise TypeError(f"objective must be a flowdip.Objective; got objective={objective!r}.")
    net = objective.generator
    if not isinstance(net, TwoLayerDIP):
        raise TypeError(
            "reachability needs the two-layer net (flowdip.TwoLayerDIP), whose measurements "
            f"are B φ(z) with z free; got a generator {type(net).__name__}."
        )
    if net.train_V:
        raise ValueError(
            "reachability needs a TwoLayerDIP that trains only W (the reduced path); this one "
            "trains V too (train_V=True), so its measurements are not confined to B φ(z)."
        )
    lower, upper = activation_range(net.activation)
    if not objective.reduced:
        objective = Objective(objective.problem, net, objective.loss, reduced=True)
    B = np.asarray(objective.B, np.float64)
    y = np.asarray(objective.problem.y, np.float64)
    if net.mask is not None:  # switched-off neurons are zero columns: drop them
        B = B[:, np.asarray(net.mask) > 0]
    margin, dist, dist_low, why = _solve_one(B, y, lower, upper)
    if why:
        raise RuntimeError(f"reachability could not be computed: {why}.")
    return _result(margin, dist, dist_low, objective.loss, lower, upper)


@checked
def reachability_batch(
    B: Float[ArrayLike, "r m k"],
    y: Float[ArrayLike, "r m"],
    value_range: tuple[float | int, float | int],
    *,
    loss: AbstractLoss = MSE(),
    sizes: Int[ArrayLike, "r 2"] | None = None,
) -> Reachability:
    """[`flowdip.reachability`][] for many instances given as plain arrays, e.g. the runs of a
    sweep. A failed solve leaves NaN (and `solved` False) for its instance, not an error.

    **Arguments:**

    - `B`, `y`: the matrices `B = A V/√k` and measurements of `r` instances.
    - `value_range`: the activation's `(lower, upper)` (e.g. `flowdip.Sigmoid().range`).
    - `loss`: the loss whose lower bound `loss_bound` holds.
    - `sizes`: the true `(m, k)` of each instance when `B` and `y` are padded; only
      `B[i, :m, :k]` and `y[i, :m]` are read.

    **Returns:** a [`flowdip.Reachability`][] with fields of shape `(r,)`.
    """
    lower, upper = check_range(value_range)
    if not isinstance(loss, AbstractLoss):
        raise TypeError(f"loss must be a loss such as flowdip.MSE(); got loss={loss!r}.")
    B, y = np.asarray(B, np.float64), np.asarray(y, np.float64)
    r, m_pad, k_pad = B.shape
    sizes = np.tile([m_pad, k_pad], (r, 1)) if sizes is None else np.asarray(sizes)
    if np.any(sizes < 1) or np.any(sizes > np.asarray([m_pad, k_pad])):
        raise ValueError(f"sizes must lie between 1 and (m, k) = {(m_pad, k_pad)}.")
    out = np.full((3, r), np.nan)
    for i, (m, k) in enumerate(sizes.tolist()):
        margin, dist, dist_low, _ = _solve_one(B[i, :m, :k], y[i, :m], lower, upper)
        out[:, i] = margin, dist, dist_low
    return _result(*out, loss, lower, upper)
