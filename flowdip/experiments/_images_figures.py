"""The test images of `flowdip reproduce images`, and its figures, table and raw metrics,
drawn from the runs' data."""

import pathlib

import matplotlib.pyplot as plt
import numpy as np


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
    "ConvDIP GF": dict(ls="--", lw=1.6),
    "ConvDIP GD": dict(ls="-", lw=1.2),
    "two-layer GD": dict(ls=":", lw=1.4),
}


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
        2, len(cols), figsize=(3.6 * len(cols), 6.4), squeeze=False, layout="constrained"
    )
    for c, (op, lvl) in enumerate(cols):
        res = results[op]
        for name, met in res["metrics"].items():
            for i, (img, case_lvl) in enumerate(cases):
                if case_lvl != lvl:
                    continue
                t = met["ts"][i] / met["t1"]
                for row, key_ in enumerate(("relative_error", "psnr")):
                    ax = axes[row, c]
                    v = met[key_][i]
                    ok = np.isfinite(v)
                    ax.plot(t[ok], v[ok], color=colors[img], **_STYLES[name])
                    if name == "ConvDIP GD" and ok.any():
                        best = int(np.nanargmin(met["relative_error"][i]))
                        ax.plot(
                            t[best], v[best], "o", color=colors[img], ms=7, mec="black", zorder=4
                        )
        sv = res["sv"]
        axes[0, c].set_title(
            f"{OPERATOR_NAMES[op]} (κ = {sv[0] / sv[-1]:.2g})\nnoise {100 * lvl:g}% of RMS(Ax̄)",
            fontsize=10,
        )
        axes[0, c].set_yscale("log")
        axes[1, c].set_xlabel("time t / t₁  (t₁ = steps·η of each net)")
        for row in range(2):
            axes[row, c].grid(True, which="both", alpha=0.3)
    axes[0, 0].set_ylabel("relative error ‖x − x̄‖/‖x̄‖")
    axes[1, 0].set_ylabel("PSNR (dB)")
    handles = [
        plt.Line2D([], [], color="gray", **style, label=name)
        for name, style in _STYLES.items()
        if name in results[ops[0]]["metrics"]
    ]
    handles += [plt.Line2D([], [], color=colors[img], lw=2, label=img) for img in options.images]
    handles.append(
        plt.Line2D(
            [],
            [],
            marker="o",
            ls="",
            color="gray",
            mec="black",
            label="early stop (best error, ConvDIP GD)",
        )
    )
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=9)
    fig.suptitle(f"Image recovery against time, {options.size}×{options.size} images")
    paths["curves"] = out / "images-curves.png"
    fig.savefig(paths["curves"], dpi=90)
    plt.close(fig)

    # -- grid of reconstructions ---------------------------------------------------------------
    rows = [(op, i) for op in ops for i in range(len(cases))]
    columns = ["truth", "observation (y or Aᵀy)", "ConvDIP GD, best", "ConvDIP GD, end"]
    if "two-layer GD" in results[ops[0]]["metrics"]:
        columns.append("two-layer GD, best")
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
        for name, when in (("ConvDIP GD", "best"), ("ConvDIP GD", "end"), ("two-layer GD", "best")):
            if name not in res["metrics"]:
                continue
            met = res["metrics"][name]
            valid = np.flatnonzero(np.isfinite(met["relative_error"][i]))
            idx = int(np.nanargmin(met["relative_error"][i])) if when == "best" else int(valid[-1])
            estimate = met["signal"][i, idx].reshape(size, size)
            label = (
                f"{met['psnr'][i, idx]:.1f} dB, SSIM {met['ssim'][i, idx]:.2f}\n"
                f"t/t₁ = {met['ts'][i, idx] / met['t1']:.2f}"
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

    # -- table and raw metrics -----------------------------------------------------------------
    lines = [
        f"flowdip reproduce images: {size}x{size} images, ConvDIP channels={options.channels}, "
        f"num_upsamples={options.num_upsamples}, {options.steps} descent steps, float32",
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
        f"{'operator':<20}{'image':<9}{'noise':>6}{'run':>14}{'best t/t1':>10}{'best err':>9}"
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
                    f"{met['ts'][i, b] / met['t1']:>10.2f}{err[b]:>9.3f}{met['psnr'][i, b]:>7.2f}"
                    f"{met['ssim'][i, b]:>6.2f}{err[e]:>9.3f}{met['psnr'][i, e]:>7.2f}"
                    f"{met['ssim'][i, e]:>6.2f}  {met['result'][i]}"
                )
    paths["summary"] = out / "summary.txt"
    paths["summary"].write_text("\n".join(lines) + "\n")
    paths["metrics"] = out / "metrics.npz"
    np.savez_compressed(paths["metrics"], **arrays)
    return paths
