"""Matplotlib figures of results (trajectories, comparisons, convergence orders).

Plots are functions of results, never of live runs. Each takes an optional `ax` and returns
the axes (or the figure, for multi-panel plots).
"""

from collections.abc import Callable, Mapping, Sequence

import matplotlib


matplotlib.use(matplotlib.get_backend() or "Agg")
import matplotlib.axes  # noqa: E402
import matplotlib.lines  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from .._analysis.compare import Comparison, ConvergenceOrder  # noqa: E402
from .._analysis.fits import fit_transition, FITTED_LAWS, success_frequency  # noqa: E402
from .._solve import Trajectory  # noqa: E402


def label_of(traj: Trajectory) -> str:
    """A short label: `gradient flow` or `GD η=…`."""
    return traj.dynamics.label()


def _finish(ax, xlabel: str, ylabel: str, title: str, which: str = "major"):
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which=which, alpha=0.3)
    ax.legend()
    return ax


def _valid(traj: Trajectory, values) -> tuple[np.ndarray, np.ndarray]:
    ok = np.asarray(traj.valid)
    return np.asarray(traj.ts)[ok], np.asarray(values)[ok]


def loss_curves(trajectories: Sequence[Trajectory], labels: Sequence[str] | None = None, ax=None):
    """Loss against time on a log scale, one line per trajectory (descent at `t = τη`)."""
    ax = ax or plt.figure(figsize=(6, 4)).gca()
    labels = labels or [label_of(t) for t in trajectories]
    for traj, label in zip(trajectories, labels):
        t, loss = _valid(traj, traj.loss)
        # The flow is the reference: black, dashed and on top, so descents stay visible below.
        style = dict(lw=1.8, ls="--", color="black", zorder=3) if "flow" in label else {}
        ax.semilogy(t, np.where(loss > 0, loss, np.nan), label=label, **style)
    return _finish(ax, "time t (descent: τ·η)", "loss F(θ(t))", "Loss")


def gap_over_time(comparisons: Sequence[Comparison], labels: Sequence[str] | None = None, ax=None):
    """The parameter gap `‖θ_GD(τη) − θ_GF(τη)‖` against time, one line per step size."""
    ax = ax or plt.figure(figsize=(6, 4)).gca()
    for i, cmp in enumerate(comparisons):
        ok = np.asarray(cmp.valid)
        t, gap = np.asarray(cmp.ts)[ok], np.asarray(cmp.param_gap)[ok]
        label = labels[i] if labels else f"η={float(cmp.step_size):g}"
        ax.loglog(t[t > 0], gap[t > 0], label=label)
    return _finish(
        ax,
        "time t = τ·η (log scale)",
        "‖θ_GD(τη) − θ_GF(τη)‖",
        "Descent against flow: parameter gap",
    )


def gap_vs_step_size(order: ConvergenceOrder, ax=None):
    """The gap at a fixed time against `η` on log-log axes, with the fitted slope and a
    slope-1 reference line."""
    ax = ax or plt.figure(figsize=(5, 4)).gca()
    eta, gap = np.asarray(order.step_sizes), np.asarray(order.gaps)
    slope, intercept = float(order.slope), float(order.intercept)
    ax.loglog(eta, gap, "o", ms=7, label="measured", zorder=3)
    grid = np.geomspace(eta.min() / 1.5, eta.max() * 1.5, 50)
    ax.loglog(grid, np.exp(intercept) * grid**slope, "-", label=f"fit: slope {slope:.3f}")
    ref = gap[np.argmin(eta)] * grid / eta.min()
    ax.loglog(grid, ref, ":", color="gray", label="slope 1 (order of explicit Euler)")
    ax.set_xlabel("step size η")
    ax.set_ylabel(f"‖θ_GD(t) − θ_GF(t)‖ at t = {order.t:g}")
    ax.set_title("Gap at fixed time against step size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return ax


def trajectories(comparison: Comparison):
    """Two panels for one comparison: both losses, and the parameter gap over time."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    loss_curves([comparison.flow, comparison.descent], ax=a)
    gap_over_time([comparison], ax=b)
    return fig


# -- phase diagrams of sweeps -------------------------------------------------------------------
#: Axis labels of the grid dimensions of a sweep.
AXIS_LABELS = {"k": "width k", "n": "signal size n", "m": "measurements m", "d": "input size d"}
_SUPERSCRIPTS = {1.0: "", 2.0: "²", 3.0: "³"}


def cell_edges(values: np.ndarray, log: bool = True) -> np.ndarray:
    """Edges of cells centred on `values` (geometric midpoints on a log axis)."""
    v = np.log(values) if log else values.astype(float)
    if len(v) == 1:
        mid = np.asarray([v[0] - 0.5, v[0] + 0.5])
    else:
        inner = (v[1:] + v[:-1]) / 2
        mid = np.concatenate([[2 * v[0] - inner[0]], inner, [2 * v[-1] - inner[-1]]])
    return np.exp(mid) if log else mid


def phase_diagram(
    ds: xr.Dataset,
    x: str = "k",
    y: str | None = None,
    *,
    ax: matplotlib.axes.Axes | None = None,
    theory: str | Sequence[str] | Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
    log: bool = True,
) -> matplotlib.axes.Axes:
    """The success frequency of a sweep over two of its dimensions, as a heat map.

    The frequency of a cell is the mean over `seed` of `converged` (cells not run are left
    blank); dimensions of size one are squeezed. Each cell is centred on its true grid value
    (`pcolormesh` with `shading="nearest"`; on log axes the cells are bounded by geometric
    midpoints, i.e. "nearest" in log coordinates). The 50% contour is drawn where the
    frequency crosses 0.5, and theory lines on request.

    **Arguments:**

    - `ds`: a sweep dataset ([`flowdip.sweep`][]) with a `converged` variable and a `seed`
      dimension.
    - `x`: the dimension on the horizontal axis (default: the width `k`).
    - `y`: the dimension on the vertical axis; by default whichever of `n` and `m` has more
      than one value.
    - `ax`: the axes to draw on (a new figure by default).
    - `theory`: lines to draw over the map. Either a mapping `label -> f`, where `f(y_values)`
      gives the `x` value of the line at each `y` value, or one (or a list) of the fitted laws
      `"k ∝ n²"` and `"k ∝ m"`: the law `k = c·y^p` is fitted by least squares in log space to
      the crossing width of each row (the smallest `k` with frequency ≥ 0.5) by
      [`flowdip.fit_transition`][] and drawn dashed, with the fitted `c` (and the
      free-exponent fit) in the legend; call that function for the numbers.
    - `log`: logarithmic axes.

    **Returns:** the `Axes`.

    **Raises:** `ValueError` if more than two dimensions (besides `seed`) vary, or if `x` or
    `y` is not one of them.
    """
    table = success_frequency(ds, x, y)
    x, y, fixed, runs = table.x, table.y, table.fixed, table.runs
    xs, ys = table.x_values, table.y_values
    freq = np.ma.masked_invalid(table.frequency)

    if ax is None:
        ax = plt.figure(figsize=(6.4, 4.8), layout="constrained").gca()
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):  # plain numbers (20, 300), not 2×10¹
            axis.set_major_formatter(matplotlib.ticker.LogFormatter())
            axis.set_minor_formatter(matplotlib.ticker.LogFormatter(labelOnlyBase=False))
    style = dict(vmin=0, vmax=1, cmap="viridis")
    if log:
        # `shading="nearest"` in log coordinates: cells bounded by geometric midpoints.
        mesh = ax.pcolormesh(cell_edges(xs, True), cell_edges(ys, True), freq, **style)
    else:
        mesh = ax.pcolormesh(xs, ys, freq, shading="nearest", **style)
    ax.figure.colorbar(mesh, ax=ax, label="success frequency")
    xlim, ylim = ax.get_xlim(), ax.get_ylim()

    handles = []
    if freq.count() and freq.min() < 0.5 <= freq.max() and len(xs) > 1 and len(ys) > 1:
        ax.contour(xs, ys, freq, levels=[0.5], colors="white", linewidths=1.8)
        handles.append(matplotlib.lines.Line2D([], [], color="white", lw=1.8, label="50% success"))

    if theory is not None:
        if isinstance(theory, str):
            theory = [theory]
        if isinstance(theory, Mapping):
            items = list(theory.items())
        else:
            items = []
            for law in theory:
                if law not in FITTED_LAWS:
                    raise ValueError(
                        f"Unknown theory law {law!r}; give one of {list(FITTED_LAWS)} or a mapping "
                        "label -> callable."
                    )
                items.append((law, None))
        line_y = np.geomspace(ys.min(), ys.max(), 200) if log else np.linspace(*ylim, 200)
        colors = ["red", "orange", "magenta", "cyan"]
        for j, (label, fn) in enumerate(items):
            color = colors[j % len(colors)]
            if fn is None:
                fit = fit_transition(ds, label, x=x, y=y)
                c, free, power = fit.coefficient, fit.free_exponent, fit.exponent
                if not np.isfinite(c):
                    continue
                free_text = (
                    f" (free exponent: {round(free, 2) + 0.0:.2f})" if np.isfinite(free) else ""
                )
                law = f"{x} = {c:.3g}·{y}{_SUPERSCRIPTS.get(power, f'^{power:g}')}"
                label = f"fit {law}{free_text}"
                (line,) = ax.plot(c * line_y**power, line_y, "--", color=color, lw=2, label=label)
            else:
                values = np.asarray(fn(line_y), dtype=float)
                (line,) = ax.plot(values, line_y, ":", color=color, lw=2, label=label)
            handles.append(line)
    ax.set_xlim(xlim)
    ax.set_ylim(ylim)

    ax.set_xlabel(AXIS_LABELS.get(x, x))
    ax.set_ylabel(AXIS_LABELS.get(y, y))
    fixed_text = ", ".join(f"{d} = {v:g}" for d, v in fixed.items())
    ax.set_title(f"{fixed_text + ' · ' if fixed_text else ''}runs per cell: {runs}")
    if handles:
        legend = ax.legend(handles=handles, loc="lower right", fontsize="small", framealpha=0.8)
        legend.get_frame().set_facecolor("0.85")
    return ax


# -- theory certificates ------------------------------------------------------------------------
def positive(values) -> np.ndarray:
    """`values` as floats with every entry `<= 0` replaced by NaN (for log axes)."""
    values = np.asarray(values, dtype=float)
    return np.where(values > 0, values, np.nan)


def certificate(certificates, labels: Sequence[str] | None = None):
    """A certificate held against its run(s): three panels.

    1. the observed loss and the predicted bound `Ψ⁻¹(Γ(t))` on one log plot;
    2. the displacement `‖θ(t) − θ₀‖` against `R'` (`R'_GD` for descent) and `R`;
    3. `σ_min(J_g(θ(t)))` along the path against `f σ₀` (`σ₀/2`).

    **Arguments:**

    - `certificates`: one [`flowdip.Certificate`][] or a list, each computed with a
      trajectory (`flowdip.certify(obj, trajectory=…)`).
    - `labels`: a label per certificate (default: `gradient flow` / `GD γ=…`).

    **Returns:** the `Figure`.
    """
    certs = [certificates] if not isinstance(certificates, Sequence) else list(certificates)
    if any(c.path is None for c in certs):
        raise ValueError("plot.certificate needs certificates made with a trajectory.")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, cert in enumerate(certs):
        p = cert.path
        ok = np.asarray(p.valid)
        t = np.asarray(p.ts)[ok]
        kind = f"GD γ={float(p.step_size):.3g}" if p.is_descent else "gradient flow"
        label = labels[i] if labels else kind
        color = colors[i % len(colors)]
        a = axes[0]
        a.semilogy(t, positive(np.asarray(p.loss)[ok]), color=color, label=f"{label}: observed")
        a.semilogy(
            t,
            positive(np.asarray(p.predicted_loss)[ok]),
            "--",
            color=color,
            label=f"{label}: bound Ψ⁻¹(Γ(t))" + (" (R'<R fails)" if not bool(p.condition) else ""),
        )
        b = axes[1]
        b.plot(t, np.asarray(p.displacement)[ok], color=color, label=f"{label}: ‖θ(t) − θ₀‖")
        radius = float(p.radius)
        if np.isfinite(radius):
            name = "R'_GD" if p.is_descent else "R'"
            b.axhline(radius, ls="--", color=color, label=f"{name} = {radius:.3g}")
        c = axes[2]
        c.plot(t, np.asarray(p.sigma_min)[ok], color=color, label=f"{label}: σ_min(J_g(θ(t)))")
    R = float(certs[0].R)
    axes[1].axhline(R, ls=":", color="black", label=f"R = {R:.3g}")
    axes[1].set_yscale("log")
    s0 = float(certs[0].sigma0)
    f = certs[0].constants.sigma_fraction
    axes[2].axhline(s0, ls=":", color="gray", label=f"σ₀ = {s0:.3g}")
    axes[2].axhline(f * s0, ls="--", color="black", label=f"{f:g}·σ₀ (theorem's floor)")
    axes[2].set_ylim(bottom=0)
    _finish(axes[0], "time t (descent: τ·γ)", "loss", "Observed loss and predicted bound", "both")
    _finish(axes[1], "time t (descent: τ·γ)", "distance (log scale)", "Displacement against R'")
    _finish(axes[2], "time t (descent: τ·γ)", "smallest singular value", "σ_min(J_g) on the path")
    return fig


def recovery(rec, ax=None, title: str | None = None):
    """The three-term recovery bound of Theorem B against the observed `‖x(t) − x̄‖`, with
    the early-stopping time `t*` and the empirical best time.

    **Arguments:**

    - `rec`: a [`flowdip.Recovery`][].
    - `ax`: the axes (a new figure by default).
    - `title`: the title (default says whether the theorem's hypothesis `R' < R` holds).

    **Returns:** the `Axes`.
    """
    ax = ax or plt.figure(figsize=(10, 4.5), layout="constrained").gca()
    ok = np.asarray(rec.valid) & (np.asarray(rec.ts) > 0)
    t = np.asarray(rec.ts)[ok]
    ax.loglog(t, np.asarray(rec.error)[ok], color="black", lw=2, label="observed ‖x(t) − x̄‖")
    ax.loglog(t, positive(np.asarray(rec.bound)[ok]), color="C3", lw=1.8, label="bound (sum)")
    ax.loglog(
        t,
        positive(np.asarray(rec.optimisation_term)[ok]),
        "--",
        color="C0",
        label="optimisation term",
    )
    # The y range follows the observed error; a term far below it is named in the legend.
    floor = 0.3 * np.nanmin(positive(np.asarray(rec.error)[ok]))
    for value, color, name in (
        (float(rec.noise_term), "C1", "noise term ‖ε‖/μ"),
        (float(rec.expressivity_term), "C2", "expressivity term"),
    ):
        if value >= floor:
            ax.axhline(value, ls="--", color=color, label=f"{name} = {value:.3g}")
        elif value > 0:
            ax.plot([], [], " ", label=f"{name} = {value:.3g} (below the plot)")
    ax.set_ylim(bottom=floor)
    best = float(rec.best_time)
    ax.axvline(best, color="black", ls=":", label=f"best time (observed) = {best:.3g}")
    t_star = float(rec.early_stopping_time)
    if 0 < t_star <= t.max():
        ax.axvline(t_star, color="C3", ls=":", label=f"early-stopping time t* = {t_star:.3g}")
    elif t_star > 0:
        ax.plot([], [], " ", label=f"t* = {t_star:.3g} (beyond the plot)")
    if title is None:
        held = "holds" if bool(rec.condition) else "fails: the bound is not guaranteed"
        title = f"Recovery: Theorem B against the run (R' < R {held})"
    _finish(ax, "time t (log scale)", "‖x − x̄‖ (log scale)", title, "both")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")  # beside the curves
    return ax
