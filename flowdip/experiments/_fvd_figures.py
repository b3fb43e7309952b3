"""The four figures and the summary of `flowdip reproduce flow-vs-descent`, drawn from the
data its studies return (and save in `data.npz`)."""

import dataclasses
import pathlib

import matplotlib.pyplot as plt
import numpy as np

from .. import plot


def order_figure(data: dict, path: pathlib.Path) -> pathlib.Path:
    """Figure 1: gap to the gradient flow (order 1) and to the modified flow (order 2)."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for order, marker in zip(data["orders"], ("o", "s")):
        eta, gap = np.asarray(order["step_sizes"]), np.asarray(order["gaps"])
        ax.loglog(eta, gap, marker, label=f"{order['label']}: slope {order['slope']:.2f}")
        fit = np.exp(order["intercept"]) * eta ** order["slope"]
        ax.loglog(eta, fit, "-", color=ax.lines[-1].get_color(), lw=1, alpha=0.6)
    ax.set_xlabel("step size η")
    ax.set_ylabel(f"‖θ_GD(t) − θ(t)‖ at t = {data['t']:g}")
    ax.set_title("Descent tracks the modified flow to O(η²)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def sharpness_figure(data: dict, path: pathlib.Path) -> pathlib.Path:
    """Figure 2: descent below and above `2/λ_max(θ₀)`: `η·λ_max`, loss, gap to the flow."""
    lam0 = data["lambda0"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for run in data["runs"]:
        ts = run["ts"]
        label = f"η = {run['factor']:g}·2/λ₀ = {run['eta']:.3g}"
        axes[0].plot(ts, run["eta_lambda"], label=label)
        axes[1].semilogy(ts, plot.positive(run["loss"]), label=label)
        axes[2].semilogy(ts[1:], plot.positive(run["gap"][1:]), label=label)
    axes[1].semilogy(data["flow_ts"], plot.positive(data["flow_loss"]), "k--", label="flow")
    axes[0].axhline(2.0, color="k", ls=":", lw=1.2, label="η·λ_max = 2")
    top = max(float(np.max(run["eta_lambda"])) for run in data["runs"])
    axes[0].set_ylim(0, min(6.0, 1.1 * top))
    axes[0].set(xlabel="time t = τη", ylabel="η·λ_max(∇²F(θ_τ))", title="Normalised sharpness")
    axes[1].set(xlabel="time t = τη", ylabel="loss F(θ)", title="Loss (flow dashed)")
    axes[2].set(
        xlabel="time t = τη",
        ylabel="‖θ_GD(τη) − θ_GF(τη)‖",
        title="Gap to the gradient flow",
    )
    for ax in axes:
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"Sharpness and the edge of stability (λ_max(θ₀) = {lam0:.3f}, 2/λ₀ = {2 / lam0:.3f})"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def inertial_figure(data: dict, path: pathlib.Path) -> pathlib.Path:
    """Figure 3: the inertial flow for several `(α, β)`, its discretisation, the gradient flow."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.semilogy(
        data["flow_ts"], plot.positive(data["flow_loss"]), "k-", lw=2, label="gradient flow"
    )
    for run in data["runs"]:
        line = ax.semilogy(
            run["ts"],
            plot.positive(run["loss"]),
            ls="-" if run["beta"] == 0 else "--",
            label=f"α = {run['alpha']:g}, β = {run['beta']:g}",
        )[0]
        ax.semilogy(
            run["disc_ts"], plot.positive(run["disc_loss"]), ".", ms=3, color=line.get_color()
        )
    ax.set_xlabel("time t (algorithm: j·h, dots)")
    ax.set_ylabel("loss F(θ(t))")
    ax.set_title(f"Inertial dynamics (dots: explicit algorithm, h = {data['h']:g})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def baselines_figure(data: dict, path: pathlib.Path) -> pathlib.Path:
    """Figure 4: flow, descent and the Optimistix baselines against iterations."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.semilogy(
        data["flow_iters"],
        plot.positive(data["flow_loss"]),
        "k--",
        lw=2,
        label="gradient flow (t/η)",
    )
    for run in data["runs"]:
        ax.semilogy(run["steps"], plot.positive(run["loss"]), label=run["label"])
    ax.set_xlabel("iterations (flow: t/η)")
    ax.set_ylabel("loss F(θ)")
    ax.set_title("Second-order baselines (Optimistix) on the same objective")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw(data: dict, out: pathlib.Path) -> dict[str, pathlib.Path]:
    """The four figures of the studies' `data` (keys `order`, `sharpness`, `inertial`,
    `baselines`), written to `out`."""
    figures = dict(
        order=order_figure,
        sharpness=sharpness_figure,
        inertial=inertial_figure,
        baselines=baselines_figure,
    )
    return {name: figure(data[name], out / f"{name}.png") for name, figure in figures.items()}


def summary_lines(options, data: dict) -> list[str]:
    """The numbers of each study (what `summary.txt` lists)."""
    order, sharp = data["order"]["orders"], data["sharpness"]
    keys = ("factor", "eta", "steps", "result")
    summary = {
        "order": dict(
            slope_flow=order[0]["slope"],
            slope_modified=order[1]["slope"],
            gaps_flow=np.asarray(order[0]["gaps"]).tolist(),
            gaps_modified=np.asarray(order[1]["gaps"]).tolist(),
        ),
        "sharpness": dict(
            lambda0=sharp["lambda0"],
            flow_lambda_end=sharp["flow_lambda_end"],
            flow_lambda_max=sharp["flow_lambda_max"],
            runs=[
                {key: run[key] for key in keys}
                | dict(
                    eta_lambda_start=float(run["eta_lambda"][0]),
                    eta_lambda_max=float(run["eta_lambda"].max()),
                    eta_lambda_end=float(run["eta_lambda"][-1]),
                    loss_increases=int(np.sum(np.diff(run["loss"]) > 0)),
                    first_step_below_2=int(np.argmax(run["eta_lambda"] < 2))
                    if run["eta_lambda"].min() < 2
                    else -1,
                    max_gap=float(np.nanmax(run["gap"])),
                )
                for run in sharp["runs"]
            ],
        ),
        "inertial": dict(time_to_tol=data["inertial"]["time_to_tol"]),
        "baselines": data["baselines"]["steps"],
    }
    lines = [f"flowdip reproduce flow-vs-descent: {dataclasses.asdict(options)}", ""]
    for name, values in summary.items():
        lines.append(f"[{name}]")
        if name == "sharpness":
            lines.append(
                f"  lambda0 = {values['lambda0']:.6g}; flow: lambda_max end "
                f"{values['flow_lambda_end']:.6g}, max {values['flow_lambda_max']:.6g}"
            )
            for row in values["runs"]:
                lines.append(
                    "  "
                    + ", ".join(
                        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in row.items()
                    )
                )
        else:
            for key, value in values.items():
                lines.append(f"  {key}: {value}")
        lines.append("")
    return lines
