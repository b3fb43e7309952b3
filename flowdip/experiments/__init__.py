"""Paper reproductions and demos, one module each, run by the `flowdip` command line.

Every experiment is a module with the same four parts:

- `Options`, a frozen dataclass holding every choice of the experiment (each field typed,
  documented in the class docstring and checked when the options are made; the command line
  is generated from it);
- `Options.quick(**overrides)`, the experiment's own small version;
- `run(options)`, which writes the results, the figures and a summary under `options.out`
  and returns the paths written;
- `redraw(folder)`, which redraws the figures from the results `run` saved in `folder`,
  without running anything (`flowdip plot DIR`; not named `plot`, which in these modules is
  `flowdip.plot`).

(`ssvm-fig1` and `ssvm-fig2` share the module `ssvm`, with one options class each.)
`EXPERIMENTS` names them; `reproduce` runs one with the output-folder rule of the command line,
`redraw` redraws a folder. No experiment imports another: what several share lives in the private
modules of this package.
"""

import dataclasses
import importlib
import pathlib
import time
from types import ModuleType

from ._folder import finish, FolderError as FolderError, read_record, start


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One entry of the registry.

    **Arguments:**

    - `module`: the module under `flowdip.experiments` that runs it.
    - `summary`: one line saying what it does (`flowdip list`).
    - `options`: the name of its options class in that module.
    - `sweeps`: whether it runs sweeps (which the command line's `--workers` and `--scheduler`
      hand to a Dask cluster).
    """

    module: str
    summary: str
    options: str = "Options"
    sweeps: bool = False

    def load(self) -> ModuleType:
        """The experiment's module (imported on first use: it imports JAX)."""
        return importlib.import_module(f"{__name__}.{self.module}")

    def options_class(self) -> type:
        """The experiment's options class."""
        return getattr(self.load(), self.options)


#: Every experiment of `flowdip reproduce`: name -> module and one-line summary.
EXPERIMENTS: dict[str, Experiment] = {
    "demo": Experiment(
        "demo",
        "gradient flow against gradient descent at three step sizes on one compressed-sensing "
        "instance (the main job, also `flowdip demo`)",
    ),
    "ssvm-fig1": Experiment(
        "ssvm",
        "P1 (SSVM 2023) Figure 1: success frequency over width k and signal size n, m = 10",
        "Fig1Options",
        sweeps=True,
    ),
    "ssvm-fig2": Experiment(
        "ssvm",
        "P1 (SSVM 2023) Figure 2: success frequency over width k and measurements m, n = 40",
        "Fig2Options",
        sweeps=True,
    ),
    "flow-vs-descent": Experiment(
        "flow_vs_descent",
        "modified flow (orders 1 and 2), sharpness and the edge of stability, inertial "
        "dynamics, second-order baselines",
    ),
    "gd-overparam": Experiment(
        "overparam",
        "P3-style check: empirical width of GD convergence against the certified thresholds, "
        "over n and over m",
        sweeps=True,
    ),
    "flow-vs-descent-phase": Experiment(
        "flow_vs_descent_phase",
        "the P1 grids run by the gradient flow and by gradient descent on the same keys: both "
        "phase diagrams, where they disagree, sharpness at initialisation",
        sweeps=True,
    ),
    "images": Experiment(
        "images",
        "P3 (EUSIPCO 2024) image reconstructions: ConvDIP by descent, flow and Adam, "
        "compressed sensing vs blur, two noise levels, early stopping, spectra",
    ),
}


def reproduce(name: str, options, *, fresh: bool = False, log=print) -> dict[str, pathlib.Path]:
    """Runs the experiment `name` with `options` under the output-folder rule of
    `flowdip reproduce`:

    - a missing or empty `options.out` starts a new run;
    - a folder holding a run of the same experiment with the same arguments (all options but
      `out` and `progress`) continues it if it was stopped, and repeats it if it finished:
      sweeps skip the chunks they already saved (a finished sweep only redraws), the other
      experiments run again;
    - a folder holding a run with other arguments or of another experiment, or files flowdip
      did not write, is refused ([`FolderError`][flowdip.experiments.FolderError]);
    - `fresh=True` first deletes a folder written by flowdip (one holding `experiment.json`).

    The folder records the experiment and its options in `experiment.json`, marked finished
    once `run` returns; [`redraw`][flowdip.experiments.redraw] reads it.

    **Returns:** the paths `run` wrote.
    """
    experiment = EXPERIMENTS[name]
    if not isinstance(options, experiment.options_class()):
        raise TypeError(f"{name} takes {experiment.options}; got {type(options).__name__}.")
    start(name, options, fresh=fresh)
    clock = time.perf_counter()
    paths = experiment.load().run(options, log=log)
    finish(options.out, time.perf_counter() - clock)
    return paths


def redraw(folder: str | pathlib.Path) -> tuple[str, dict[str, pathlib.Path]]:
    """Redraws the figures of a folder written by [`reproduce`][flowdip.experiments.reproduce]
    from the results saved there (nothing is run).

    **Returns:** the experiment's name and the paths written.
    """
    folder = pathlib.Path(folder)
    name = read_record(folder)["experiment"]
    if name not in EXPERIMENTS:
        raise FolderError(f"{folder}: unknown experiment {name!r} in experiment.json.")
    return name, EXPERIMENTS[name].load().redraw(folder)
