"""Worked examples of the theory certificates (used by `examples/`, the docs and the tests).

- [`near_objective`][flowdip.experiments.certificates.near_objective]: an instance where the
  certificate's hypothesis `R' < R` holds (the target is a small perturbation of the initial
  signal), so every guarantee of the theorems applies;
- [`ill_conditioned_objective`][flowdip.experiments.certificates.ill_conditioned_objective]:
  a square, ill-conditioned operator with noise, where the error `‖x(t) − x̄‖` falls, then
  rises (early stopping matters);
- [`loss_families`][flowdip.experiments.certificates.loss_families] and
  [`early_stopping`][flowdip.experiments.certificates.early_stopping]: the two figures.
"""

import pathlib

import jax.numpy as jnp
import jax.random as jr
import matplotlib.pyplot as plt
import numpy as np

from .. import plot
from .._dynamics import GradientDescent, GradientFlow, LossBelow
from .._generator.networks import TwoLayerDIP
from .._losses import AbstractLoss, Huber, MSE, PowerLoss, PseudoHuber
from .._objective import Objective
from .._problem.problem import InverseProblem
from .._solve import solve
from .._theory.certificate import certify
from .._theory.recovery import recovery


def near_objective(
    key, *, n: int = 8, m: int = 4, k: int = 200, d: int = 5, eps: float = 0.02, loss=MSE()
) -> Objective:
    """Compressed sensing (`A` with N(0, 1/m) entries) of a target `x̄ = g(u, θ₀) + eps·ξ`,
    `ξ ~ N(0, I)`: the initial loss is small, so `R' < R` holds for moderate widths."""
    k_a, k_n, k_x = jr.split(key, 3)
    A = jr.normal(k_a, (m, n)) / jnp.sqrt(m)
    net = TwoLayerDIP.init(k_n, d=d, k=k, n=n)
    x = net() + eps * jr.normal(k_x, (n,))
    return Objective(InverseProblem(A, x), net, loss)


def ill_conditioned_objective(
    key,
    *,
    n: int = 20,
    k: int = 500,
    d: int = 8,
    condition: float = 100.0,
    noise_std: float = 0.05,
) -> Objective:
    """A square operator `A = U diag(s) Qᵀ` (random orthogonal `U`, `Q`; singular values `s`
    log-spaced from 1 to `1/condition`), a smooth target `x̄_i = ½ + ½ sin(2π i/(n−1))` and
    Gaussian noise: the flow fits the signal first and the noise later, so the error
    `‖x(t) − x̄‖` falls, then rises."""
    k_u, k_q, k_e, k_n = jr.split(key, 4)
    U, _ = jnp.linalg.qr(jr.normal(k_u, (n, n)))
    Q, _ = jnp.linalg.qr(jr.normal(k_q, (n, n)))
    A = U @ jnp.diag(jnp.geomspace(1.0, 1.0 / condition, n)) @ Q.T
    x = 0.5 + 0.5 * jnp.sin(2 * jnp.pi * jnp.linspace(0.0, 1.0, n))
    net = TwoLayerDIP.init(k_n, d=d, k=k, n=n)
    return Objective(InverseProblem(A, x, noise_std=noise_std, key=k_e), net)


#: The loss families of the loss-decay figure, with the shape docs/theory.md §4 and §6 predict.
LOSS_FAMILIES: tuple[tuple[str, AbstractLoss, str], ...] = (
    ("MSE", MSE(), "exponential"),
    ("Huber(δ=0.02)", Huber(0.02), "linear, then exponential"),
    ("PseudoHuber(δ=0.02)", PseudoHuber(0.02), "linear, then exponential"),
    ("PowerLoss(p=1.5)", PowerLoss(1.5), "finite time"),
    ("PowerLoss(p=3)", PowerLoss(3.0), "sublinear, O(t^-3)"),
)


def loss_families(out, *, quick: bool = False, seed: int = 0) -> dict[str, pathlib.Path]:
    """For each loss family, the flow's observed loss next to its predicted bound
    `Ψ⁻¹(Γ(t))` on one instance of `near_objective` (where `R' < R` holds, so every bound is
    guaranteed).

    **Returns:** `{"figure": path, "summary": path}`.
    """
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n, m, k, t1 = (6, 3, 60, 2000.0) if quick else (8, 4, 200, 20_000.0)
    ts = np.concatenate([[0.0], np.geomspace(1e-2, t1, 120 if quick else 300)])
    fig, axes = plt.subplots(1, len(LOSS_FAMILIES), figsize=(4 * len(LOSS_FAMILIES), 3.8))
    lines = ["loss family | shape | R' < R | observed ≤ bound | final loss"]
    for ax, (name, loss, shape) in zip(axes, LOSS_FAMILIES):
        obj = near_objective(jr.key(seed), n=n, m=m, k=k, eps=0.3, loss=loss)
        traj = solve(obj, GradientFlow(), t1=t1, ts=ts, stop=LossBelow(1e-10), throw=False)
        cert = certify(obj, trajectory=traj)
        p = cert.path
        ok = np.asarray(p.valid) & (np.asarray(p.ts) > 0)
        t = np.asarray(p.ts)[ok]
        ax.loglog(t, plot.positive(np.asarray(p.loss)[ok]), color="black", lw=2, label="observed")
        grid = np.geomspace(t.min(), t1, 400)
        bound = np.asarray(cert.predicted_loss(jnp.asarray(grid)))
        ax.loglog(grid, plot.positive(bound), "--", color="C3", lw=2, label="bound Ψ⁻¹(Γ(t))")
        observed = np.asarray(p.loss)[ok]
        # The bound keeps falling far below what float64 resolves: show the observed range.
        ax.set_ylim(bottom=max(np.nanmin(plot.positive(observed)) / 1e3, 1e-30))
        ax.set_title(f"{name}\npredicted: {shape}", fontsize="medium")
        ax.set_xlabel("time t (log scale)")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize="small", loc="lower left")
        lines.append(
            f"{name} | {shape} | {bool(p.condition)} | {bool(p.loss_ok)} | "
            f"{float(traj.final_loss):.3e}"
        )
    axes[0].set_ylabel("loss (log scale)")
    fig.suptitle("Gradient flow: observed loss against the KL bound of each loss family")
    fig.tight_layout()
    paths = {"figure": out / "loss_families.png", "summary": out / "loss_families.txt"}
    fig.savefig(paths["figure"], dpi=90)
    plt.close(fig)
    paths["summary"].write_text("\n".join(lines) + "\n")
    return paths


def early_stopping(out, *, quick: bool = False, seed: int = 0) -> dict[str, pathlib.Path]:
    """The noisy example: on `ill_conditioned_objective` the flow's error falls, then rises;
    the recovery bound, its three terms, the predicted early-stopping time and the empirical
    best time on one figure.

    **Returns:** `{"figure": path, "summary": path}`.
    """
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n, k, t1 = (10, 100, 2e5) if quick else (20, 500, 2e5)
    obj = ill_conditioned_objective(jr.key(seed), n=n, k=k, condition=100.0, noise_std=0.05)
    ts = np.concatenate([[0.0], np.geomspace(1e-1, t1, 80 if quick else 200)])
    traj = solve(obj, GradientFlow(), t1=t1, ts=ts)
    # The flow's bound needs no L: skip the sampled estimate (a Hessian power iteration).
    rec = recovery(obj, traj, certify(obj, trajectory=traj, sampled=False))
    ax = plot.recovery(rec)
    ax.set_title(
        f"Noisy ill-conditioned problem (n = m = {n}, κ(A) = 100, σ_ε = 0.05, k = {k})\n"
        + ax.get_title(),
        fontsize="medium",
    )
    paths = {"figure": out / "early_stopping.png", "summary": out / "early_stopping.txt"}
    ax.figure.savefig(paths["figure"], dpi=90)
    plt.close(ax.figure)
    err = np.asarray(rec.error)[np.asarray(rec.valid)]
    paths["summary"].write_text(
        f"initial error {err[0]:.4g}, best {float(rec.best_error):.4g} at t = "
        f"{float(rec.best_time):.4g}, final {err[-1]:.4g}\n"
        f"predicted early-stopping time t* = {float(rec.early_stopping_time):.4g}\n"
        f"dist(x̄, Σ') ≤ {float(rec.dist):.3g}, μ_pair = {float(rec.mu_pair):.3g}, "
        f"μ_traj = {float(rec.mu_traj):.3g}, R' < R: {bool(rec.condition)}\n"
    )
    return paths


def descent_and_flow(out, *, seed: int = 0) -> dict[str, pathlib.Path]:
    """`fd.plot.certificate` for a flow and a descent run of one `R' < R` instance."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    obj = near_objective(jr.key(seed))
    cert = certify(obj)
    steps = 500  # the flow reaches its round-off floor (1e-16) soon after
    gd = solve(obj, GradientDescent(cert.step_size), num_steps=steps, num_saves=steps + 1)
    gf = solve(obj, GradientFlow(), t1=float(steps * cert.step_size), num_saves=301)
    fig = plot.certificate([certify(obj, trajectory=gf), certify(obj, trajectory=gd)])
    paths = {"figure": out / "certificate.png", "table": out / "certificate.txt"}
    fig.savefig(paths["figure"], dpi=80)
    plt.close(fig)
    paths["table"].write_text(plot.certificate_table(certify(obj, trajectory=gd)) + "\n")
    return paths
