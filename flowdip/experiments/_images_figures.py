"""The test images of `flowdip reproduce images`, and its figures, table and raw metrics,
drawn from the runs' data."""

import pathlib

import matplotlib.pyplot as plt
import numpy as np

from ._images_spectra import Spectrum


IMAGES = ("camera", "phantom")
OPERATOR_NAMES = {"cs": "compressed sensing", "blur": "Gaussian blur"}


def load_image(name: str, size: int) -> np.ndarray:
    """A scikit-image test image (`"camera"` or `"phantom"`), anti-aliased down to
    `size × size` and scaled to `[0, 1]`, as float64."""
    try:
        import skimage.data
        import skimage.transform
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "The image experiments need scikit-image for their test images: "
            "pip install 'flowdip[images]'"
        ) from error
    if name == "camera":
        image = skimage.data.camera().astype(np.float64) / 255.0
    elif name == "phantom":
        image = skimage.data.shepp_logan_phantom().astype(np.float64)
    else:
        raise ValueError(f"Unknown test image {name!r}; choose from {IMAGES}.")
    image = skimage.transform.resize(image, (size, size), anti_aliasing=True)
    lo, hi = image.min(), image.max()
    return (image - lo) / (hi - lo)


_STYLES = {
    "ConvDIP GD": dict(ls="-", lw=1.2),
    "ConvDIP GF": dict(ls="--", lw=1.6),
    "ConvDIP Adam": dict(ls="-.", lw=1.3),
    "two-layer GD": dict(ls=":", lw=1.4),
}
#: The runs whose early-stopping point the curves mark.
_MARKED = {"ConvDIP GD": "o", "ConvDIP Adam": "s"}


def _steps(met) -> np.ndarray:
    """Save times as steps: of each discrete method its own, of the flow descent's (`t/η`)."""
    step = met.get("step_size")
    if step is None:  # data written before step sizes were recorded: time over the horizon
        return met["ts"] / met["t1"]
    return met["ts"] / step


def write(options, truths, cases, results) -> dict[str, pathlib.Path]:
    """The figures (`curves`, `grid`), the table (`summary`) and the raw metrics (`metrics`)
    of the runs' data (`results`: per operator, its singular values, step size and each
    net's metrics along its run)."""

    out = options.out
    paths = {}
    ops = list(results)
    levels = options.noise_levels
    colors = {img: f"C{i}" for i, img in enumerate(options.images)}

    # -- curves: relative error and PSNR against time, one column per (operator, noise) -----
    cols = [(op, lvl) for op in ops for lvl in levels]
    fig, axes = plt.subplots(
        2, len(cols), figsize=(max(3.6 * len(cols), 9.0), 6.4), squeeze=False, layout="constrained"
    )
    for c, (op, lvl) in enumerate(cols):
        res = results[op]
        for name, met in res["metrics"].items():
            for i, (img, case_lvl) in enumerate(cases):
                if case_lvl != lvl:
                    continue
                t = _steps(met)[i]
                for row, key_ in enumerate(("relative_error", "psnr")):
                    ax = axes[row, c]
                    v = met[key_][i]
                    ok = np.isfinite(v)
                    ax.plot(t[ok], v[ok], color=colors[img], **_STYLES[name])
                    if name in _MARKED and ok.any():
                        best = int(np.nanargmin(met["relative_error"][i]))
                        ax.plot(
                            t[best],
                            v[best],
                            _MARKED[name],
                            color=colors[img],
                            ms=7,
                            mec="black",
                            zorder=4,
                        )
        sv = res["sv"]
        axes[0, c].set_title(
            f"{OPERATOR_NAMES[op]} (κ = {sv[0] / sv[-1]:.2g})\nnoise {100 * lvl:g}% of RMS(Ax̄)",
            fontsize=10,
        )
        axes[0, c].set_yscale("log")
        axes[1, c].set_xlabel("step (flow: t/η of descent)")
        for row in range(2):
            axes[row, c].set_xscale("symlog", linthresh=1, linscale=0.3)
            axes[row, c].set_xlim(left=0)
            axes[row, c].grid(True, which="both", alpha=0.3)
    axes[0, 0].set_ylabel("relative error ‖x − x̄‖/‖x̄‖")
    axes[1, 0].set_ylabel("PSNR (dB)")
    handles = [
        plt.Line2D([], [], color="gray", **style, label=name)
        for name, style in _STYLES.items()
        if name in results[ops[0]]["metrics"]
    ]
    handles += [plt.Line2D([], [], color=colors[img], lw=2, label=img) for img in options.images]
    handles += [
        plt.Line2D(
            [], [], marker=marker, ls="", color="gray", mec="black", label=f"best error, {name}"
        )
        for name, marker in _MARKED.items()
        if name in results[ops[0]]["metrics"]
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=9)
    fig.suptitle(f"Image recovery against steps, {options.size}×{options.size} images")
    paths["curves"] = out / "images-curves.png"
    fig.savefig(paths["curves"], dpi=90)
    plt.close(fig)

    # -- grid of reconstructions ---------------------------------------------------------------
    rows = [(op, i) for op in ops for i in range(len(cases))]
    shown = [
        (name, when)
        for name, when in (
            ("ConvDIP GD", "best"),
            ("ConvDIP GD", "end"),
            ("ConvDIP Adam", "best"),
            ("ConvDIP Adam", "end"),
            ("two-layer GD", "best"),
        )
        if name in results[ops[0]]["metrics"]
    ]
    columns = ["truth", "observation (y or Aᵀy)"] + [f"{name}, {when}" for name, when in shown]
    fig, axes = plt.subplots(
        len(rows),
        len(columns),
        figsize=(1.9 * len(columns), 2.0 * len(rows)),
        squeeze=False,
        layout="constrained",
    )
    size = options.size
    for r, (op, i) in enumerate(rows):
        res = results[op]
        img, lvl = cases[i]
        truth = truths[img]
        panels = [(truth, "truth"), (res["observations"][i], "observation")]
        for name, when in shown:
            met = res["metrics"][name]
            valid = np.flatnonzero(np.isfinite(met["relative_error"][i]))
            idx = int(np.nanargmin(met["relative_error"][i])) if when == "best" else int(valid[-1])
            estimate = met["signal"][i, idx].reshape(size, size)
            label = (
                f"{met['psnr'][i, idx]:.1f} dB, SSIM {met['ssim'][i, idx]:.2f}\n"
                f"step {_steps(met)[i, idx]:.0f}"
            )
            panels.append((estimate, label))
        for c, (picture, label) in enumerate(panels):
            ax = axes[r, c]
            vmin, vmax = (0, 1) if c != 1 else (None, None)
            ax.imshow(picture, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= 2:
                ax.set_xlabel(label, fontsize=8)
            if r == 0:
                ax.set_title(columns[c], fontsize=9)
        axes[r, 0].set_ylabel(f"{img}\n{OPERATOR_NAMES[op]}\nnoise {100 * lvl:g}%", fontsize=8)
    paths["grid"] = out / "images-grid.png"
    fig.savefig(paths["grid"], dpi=80)
    plt.close(fig)

    if all("spectra" in results[op] for op in ops):
        paths["spectra"] = _spectra_figure(options, cases, results)

    # -- table and raw metrics -----------------------------------------------------------------
    adam = f", Adam lr={options.adam_lr:g} {options.adam_steps} steps" if options.adam else ""
    lines = [
        f"flowdip reproduce images: {size}x{size} images, ConvDIP channels={options.channels}, "
        f"num_upsamples={options.num_upsamples}, {options.steps} descent steps{adam}, float32",
        "",
        f"{'operator':<20}{'‖A‖':>8}{'κ(A)':>10}{'L̂':>10}{'η':>10}",
    ]
    for op in ops:
        res = results[op]
        sv = res["sv"]
        lines.append(
            f"{OPERATOR_NAMES[op]:<20}{sv[0]:>8.3g}{sv[0] / sv[-1]:>10.3g}"
            f"{res['L']:>10.3g}{res['eta']:>10.3g}"
        )
    lines += [
        "",
        "best = the save time of least recovery error (oracle early stopping); end = last save",
        f"{'operator':<20}{'image':<9}{'noise':>6}{'run':>14}{'best step':>10}{'best err':>9}"
        f"{'PSNR':>7}{'SSIM':>6}{'end err':>9}{'PSNR':>7}{'SSIM':>6}  result",
    ]
    arrays = {}
    for op in ops:
        res = results[op]
        for name, met in res["metrics"].items():
            tag = f"{op}/{name.replace(' ', '_')}"
            for key_ in ("relative_error", "psnr", "ssim", "loss", "ts"):
                arrays[f"{tag}/{key_}"] = met[key_]
            for i, (img, lvl) in enumerate(cases):
                err = met["relative_error"][i]
                valid = np.flatnonzero(np.isfinite(err))
                b, e = int(np.nanargmin(err)), int(valid[-1])
                lines.append(
                    f"{OPERATOR_NAMES[op]:<20}{img:<9}{100 * lvl:>5g}%{name:>14}"
                    f"{_steps(met)[i, b]:>10.0f}{err[b]:>9.3f}{met['psnr'][i, b]:>7.2f}"
                    f"{met['ssim'][i, b]:>6.2f}{err[e]:>9.3f}{met['psnr'][i, e]:>7.2f}"
                    f"{met['ssim'][i, e]:>6.2f}  {met['result'][i]}"
                )
    if all("spectra" in results[op] for op in ops):
        lines += ["", *_spectra_table(options, cases, results)]
    paths["summary"] = out / "summary.txt"
    paths["summary"].write_text("\n".join(lines) + "\n")
    paths["metrics"] = out / "metrics.npz"
    np.savez_compressed(paths["metrics"], **arrays)
    return paths


def _spectrum(data: dict) -> Spectrum:
    return Spectrum(
        np.asarray(data["sigma"]), np.asarray(data["coefficients"]), float(data["kernel_energy"])
    )


def _psnr(relative_error: float, truth_norm: float, n: int) -> float:
    return float(-20 * np.log10(relative_error * truth_norm / np.sqrt(n)))


def _spectra_figure(options, cases, results) -> pathlib.Path:
    """Per operator: its singular values and each image's clean data `σ_i |v_iᵀ x̄|` in its
    singular basis, against the noise's standard deviation per coefficient (a Picard plot:
    the coefficients below the noise are lost to any estimate from the data)."""
    ops = list(results)
    colors = {img: f"C{i}" for i, img in enumerate(options.images)}
    dashes = ["--", ":", "-.", (0, (1, 3))]
    fig, axes = plt.subplots(
        1, len(ops), figsize=(5.2 * len(ops), 4.0), squeeze=False, layout="constrained"
    )
    for c, op in enumerate(ops):
        ax = axes[0, c]
        res = results[op]
        lowest, kernel_notes = np.inf, []
        for img in options.images:
            spec = _spectrum(res["spectra"][img])
            index = np.arange(1, len(spec.sigma) + 1)
            # Medians over bins of equal width in log i: single coefficients scatter over
            # decades, their trend is what meets the noise.
            edges = np.unique(np.round(np.geomspace(1, len(index) + 1, 60)).astype(int))
            picard = spec.picard()
            centre = np.sqrt(edges[:-1] * (edges[1:] - 1))
            median = [np.median(picard[a - 1 : b - 1]) for a, b in zip(edges[:-1], edges[1:])]
            ax.plot(centre, median, color=colors[img], lw=1.4, label=img)
            if spec.kernel_energy > 0:
                kernel_notes.append(f"{img}: {np.sqrt(spec.kernel_energy) / spec.norm:.2f}")
            lowest = min(lowest, min(median))
        ax.plot(index, spec.sigma, color="black", lw=1.6, label="σ_i")
        if kernel_notes:
            unseen = options.size**2 - len(spec.sigma)
            ax.text(
                0.02,
                0.03,
                f"kernel of A: {unseen} dimensions, not shown\n‖P_ker x̄‖/‖x̄‖ = "
                + ", ".join(kernel_notes),
                transform=ax.transAxes,
                fontsize=8,
            )
        for i, (img, lvl) in enumerate(cases):
            level = options.noise_levels.index(lvl) % len(dashes)
            ax.axhline(res["stds"][i], color=colors[img], ls=dashes[level], lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        lowest = min(lowest, spec.sigma[-1], float(np.min(res["stds"])))
        ax.set_ylim(max(1e-12, lowest / 3), None)
        ax.set_xlabel("index i (singular values in decreasing order)")
        ax.set_title(
            f"{OPERATOR_NAMES[op]} (κ = {spec.sigma[0] / spec.sigma[-1]:.2g})", fontsize=10
        )
        ax.grid(True, which="major", alpha=0.3)
    axes[0, 0].set_ylabel("σ_i, and the clean data σ_i|v_iᵀx̄|\n(medians over log-spaced bins of i)")
    noise = [
        plt.Line2D([], [], color="gray", ls=dashes[j % len(dashes)], label=f"noise {100 * lvl:g}%")
        for j, lvl in enumerate(options.noise_levels)
    ]
    handles = axes[0, 0].get_legend_handles_labels()[0] + noise
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=9)
    fig.suptitle("The operators' spectra and the images' data against the noise")
    path = options.out / "images-spectra.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _spectra_table(options, cases, results) -> list[str]:
    """What conditioning and noise allow (the oracle diagonal filter in each operator's
    singular basis) next to what each run reached at its best."""
    n = options.size**2
    names = [name for name in _STYLES if name in results[next(iter(results))]["metrics"]]
    lines = [
        "what the operator and the noise allow: the oracle diagonal filter in A's singular "
        "basis (PSNR from its row-space error alone, and with the unseen kernel of A); "
        "drowned = share of x̄'s row-space energy below the noise; then each run's best PSNR",
        f"{'operator':<20}{'image':<9}{'noise':>6}{'drowned':>9}{'row':>7}{'+kernel':>8}"
        + "".join(f"{name:>14}" for name in names),
    ]
    for op, res in results.items():
        for i, (img, lvl) in enumerate(cases):
            spec = _spectrum(res["spectra"][img])
            row, kernel = spec.ideal_error(float(res["stds"][i]))
            best = [float(np.nanmax(res["metrics"][name]["psnr"][i])) for name in names]
            lines.append(
                f"{OPERATOR_NAMES[op]:<20}{img:<9}{100 * lvl:>5g}%"
                f"{100 * spec.drowned(float(res['stds'][i])):>8.1f}%"
                f"{_psnr(row, spec.norm, n):>7.2f}"
                f"{_psnr(np.hypot(row, kernel), spec.norm, n):>8.2f}"
                + "".join(f"{b:>14.2f}" for b in best)
            )
    return lines
