"""The `flowdip` command line (also `python -m flowdip`).

`flowdip reproduce NAME` takes exactly the options of that experiment: its parser is generated
from the fields of the experiment's `Options` dataclass (the type from the annotation, the
help from the docstring), so an option the experiment does not take is an error, never
ignored.
"""

import argparse
import collections.abc
import contextlib
import dataclasses
import importlib.metadata
import math
import os
import pathlib
import sys
import time
import types
import typing
from collections.abc import Callable

from .experiments import EXPERIMENTS, FolderError


class _Parser(argparse.ArgumentParser):
    """Errors as one line (no usage block): the option, the value, what is wrong. No
    abbreviated options: `--step` is not `--step-size`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{**kwargs, "allow_abbrev": False})

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(kind: type, positive: bool) -> Callable[[str], int | float]:
    noun = {int: "integer", float: "number"}[kind]

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'a positive' if positive else 'an'} {noun}, got {text!r}"
            )
        if positive and not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"expected a positive {noun}, got {text!r}")
        return value

    parse.__name__ = noun
    return parse


def _items(kind: type, positive: bool) -> Callable[[str], tuple]:
    noun = {int: "integers", float: "numbers", str: "names"}[kind]

    def parse(text: str) -> tuple:
        try:
            values = tuple(kind(v) for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {noun}, got {text!r}")
        if positive and any(not (v > 0 and math.isfinite(v)) for v in values):
            raise argparse.ArgumentTypeError(f"expected positive {noun}, got {text!r}")
        return values

    parse.__name__ = f"comma-separated {noun}"
    return parse


def _path(text: str) -> pathlib.Path:
    # `Path("")` is the current folder: an empty argument is a mistake, not a request for it.
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder, got an empty path")
    return pathlib.Path(text)


def _scalar(hint) -> type | None:
    """The command-line type of one value: int, float, str, a path or a Literal."""
    if hint is os.PathLike or typing.get_origin(hint) is os.PathLike:
        return pathlib.Path
    if typing.get_origin(hint) is typing.Literal:
        return hint
    return hint if hint in (bool, int, float, str, pathlib.Path) else None


def _kind(hint) -> tuple[str, typing.Any]:
    """`("flag" | "one" | "many", type)` of a field's annotation."""
    args = (
        typing.get_args(hint)
        if typing.get_origin(hint) in (typing.Union, types.UnionType)
        else (hint,)
    )
    args = [a for a in args if a is not type(None)]
    many = [
        a
        for a in args
        if typing.get_origin(a) in (tuple, collections.abc.Sequence)
        and (typing.get_origin(a) is collections.abc.Sequence or typing.get_args(a)[-1] is ...)
    ]
    if many:
        inner = typing.get_args(many[0])[0]
        inner = (
            typing.get_args(inner)
            if typing.get_origin(inner) in (typing.Union, types.UnionType)
            else (inner,)
        )
        scalars = {_scalar(a) for a in inner} - {None}
        return "many", (pathlib.Path if pathlib.Path in scalars else max(scalars, key=str))
    scalars = [s for s in (_scalar(a) for a in args) if s is not None]
    if bool in scalars:
        return "flag", bool
    if int in scalars and float in scalars:
        return "one", float
    if pathlib.Path in scalars:
        return "one", pathlib.Path
    return "one", scalars[0] if scalars else None


def _default_text(value) -> str:
    if value is None or value == ():
        return "none"
    if isinstance(value, tuple):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _add_options(parser: argparse.ArgumentParser, cls: type) -> dict[str, str]:
    """One option per field of `cls`; returns `{field: flag}`."""
    from .experiments._folder import field_help

    helps, hints, flags = field_help(cls), typing.get_type_hints(cls), {}
    for field in dataclasses.fields(cls):
        meta = field.metadata
        if meta.get("cli") is False:
            continue
        if field.name not in helps:
            raise TypeError(f"{cls.__qualname__}.{field.name} has no line in the docstring.")
        text = helps[field.name].replace("%", "%%").rstrip(".")
        how, kind = _kind(hints[field.name])
        name = meta.get("flag", field.name).replace("_", "-")
        if how == "flag":
            flag = f"--{name}" if field.default is False else f"--no-{name}"
            action = "store_true" if field.default is False else "store_false"
            text = text if field.default is False else f"turn off: {text}"
            parser.add_argument(
                flag, dest=field.name, action=action, default=argparse.SUPPRESS, help=text
            )
            flags[field.name] = flag
            continue
        flag = f"--{name}"
        kwargs = dict(dest=field.name, default=argparse.SUPPRESS)
        if "parse" in meta:
            kwargs["type"] = meta["parse"]
        elif "choices" in meta and how == "one":
            kwargs["choices"] = meta["choices"]
        elif typing.get_origin(kind) is typing.Literal:
            kwargs["choices"] = typing.get_args(kind)
        elif how == "many" and "nargs" in meta:
            kwargs.update(nargs=meta["nargs"], type=kind if kind is not pathlib.Path else _path)
        elif how == "many":
            kwargs["type"] = _items(kind, meta.get("positive", False))
        elif kind in (int, float):
            kwargs["type"] = _number(kind, meta.get("positive", False))
        elif kind is pathlib.Path:
            kwargs["type"] = _path
        if "metavar" in meta:
            kwargs["metavar"] = meta["metavar"]
        elif how == "many" and "nargs" not in meta:
            kwargs["metavar"] = name.upper().replace("-", "_") + ",..."
        elif "choices" not in kwargs:
            kwargs["metavar"] = name.upper().replace("-", "_")
        if field.default is not dataclasses.MISSING:
            shown = meta.get("default_text") or _default_text(field.default)
            text += f" (default: {shown})"
        parser.add_argument(flag, help=text, **kwargs)
        flags[field.name] = flag
    return flags


def _experiment_parser(sub, command: str, name: str, full: bool) -> None:
    experiment = EXPERIMENTS[name]
    parser = sub.add_parser(command, help=experiment.summary, description=experiment.summary)
    parser.set_defaults(experiment=name)
    if not full:
        return
    cls = experiment.options_class()
    quick = (cls.quick.__doc__ or "a smaller version").strip().split("\n\n")[0]
    parser.description = f"{experiment.summary}. {(cls.__doc__ or '').splitlines()[0]}"
    parser.add_argument("--quick", action="store_true", help=" ".join(quick.split()))
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="delete --out first (only a folder written by flowdip, holding experiment.json) "
        "and start over; without it a run with the same arguments continues (or repeats) "
        "the one in --out, and one with other arguments is refused",
    )
    flags = _add_options(parser, cls)
    if experiment.sweeps:
        parser.add_argument(
            "--workers",
            type=_number(int, True),
            metavar="N",
            help="run the sweeps' chunks on a local Dask cluster of N worker processes (needs "
            "flowdip[cluster]; the results are the same as in one process)",
        )
        parser.add_argument(
            "--scheduler",
            metavar="ADDRESS",
            help="run the sweeps' chunks on the Dask cluster whose scheduler is at ADDRESS "
            "(e.g. tcp://10.0.0.1:8786; its workers must see --out)",
        )
        flags.update(workers="--workers", scheduler="--scheduler")
    parser.set_defaults(flags=flags)


def _parser(full: str | None = "all") -> argparse.ArgumentParser:
    """The parser; `full`: the experiment whose options are built (`"all"`: every one; the
    others only list their name, which spares importing them)."""
    parser = _Parser(
        prog="flowdip",
        description="Gradient flow versus gradient descent for Deep Inverse Prior networks.",
    )
    parser.add_argument(
        "--version", action="version", version=f"flowdip {importlib.metadata.version('flowdip')}"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("list", help="name every experiment, one line each")
    _experiment_parser(sub, "demo", "demo", full in ("all", "demo"))
    rep = sub.add_parser(
        "reproduce",
        help="run an experiment (`flowdip list` names them; `flowdip reproduce NAME --help`)",
        description="Runs one experiment: writes its results, figures and a summary under --out.",
    )
    names = rep.add_subparsers(dest="name", required=True, metavar="NAME")
    for name in EXPERIMENTS:
        _experiment_parser(names, name, name, full in ("all", name))
    plot = sub.add_parser(
        "plot",
        help="redraw the figures of a folder written by `flowdip reproduce` (nothing is run)",
        description="Redraws an experiment's figures from the results saved in DIR.",
    )
    plot.add_argument("folder", type=_path, metavar="DIR")
    return parser


def _which(argv: list[str]) -> str | None:
    """The experiment named on the command line, if any (only its options are built)."""
    if argv[:1] == ["demo"]:
        return "demo"
    if argv[:1] == ["reproduce"] and len(argv) > 1 and argv[1] in EXPERIMENTS:
        return argv[1]
    return None


#: The environment variable that moves (a folder) or switches off (`off`) the compilation cache.
CACHE_VARIABLE = "FLOWDIP_COMPILATION_CACHE"


def cache_folder(environ: collections.abc.Mapping[str, str] = os.environ) -> pathlib.Path | None:
    """Where the `flowdip` command keeps compiled programs between runs (JAX's persistent
    compilation cache): `$FLOWDIP_COMPILATION_CACHE` if set (`off`, `0` or an empty value
    switch the cache off: `None`), else `$XDG_CACHE_HOME/flowdip/jax`, else
    `~/.cache/flowdip/jax`."""
    value = environ.get(CACHE_VARIABLE)
    if value is not None:
        return (
            None
            if value.strip().lower() in ("", "0", "off", "no", "false")
            else (pathlib.Path(value).expanduser())
        )
    base = environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(base) / "flowdip" / "jax"


def entry() -> int:
    """The `flowdip` console command: `main` with JAX's persistent
    compilation cache in `cache_folder()`, so that a second run
    of a command does not compile its programs again. (`main` itself, which tests and
    scripts call, leaves JAX's configuration to the caller.)"""
    # Before JAX loads LAPACK: its CPU eigensolvers run OpenBLAS, whose threads spin against
    # XLA's and any other process for the cores; at n = 512 a batch of σ_min took 1.5–3.5
    # times as long with them on a loaded 2-core machine, and 16 times at n = 100.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    folder = cache_folder()
    if folder is not None:
        import jax

        jax.config.update("jax_compilation_cache_dir", str(folder))
        # JAX's default keeps only programs that took a second to compile; a sweep's small
        # programs (keys, gathers, read-outs) add up to more than its big ones.
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
    return main()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `flowdip` command (without the compilation cache: see `entry`)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    which = _which(argv)
    if which is not None:
        # float64 before any array exists: the flow is a float64 reference and thresholds
        # like 1e-7 on the loss are beyond float32.
        import jax

        jax.config.update("jax_enable_x64", True)
    args, unknown = _parser(which).parse_known_args(argv)
    if unknown:
        # Not ignored: an option the command does not take is an error, like a bad value.
        prog = {"demo": "flowdip demo", "reproduce": f"flowdip reproduce {which}"}
        flags = [a for a in unknown if a.startswith("-")] or unknown
        print(
            f"{prog.get(args.command, 'flowdip ' + args.command)}: error: "
            f"{'this command does not take' if which is None else which + ' does not take'} "
            f"{', '.join(flags)} (see --help for its options)",
            file=sys.stderr,
        )
        return 2
    if args.command == "list":
        width = max(map(len, EXPERIMENTS))
        for name, experiment in EXPERIMENTS.items():
            print(f"{name:<{width}}  {experiment.summary}")
        return 0
    if args.command == "plot":
        return _plot(args.folder)
    return _reproduce(args)


def _fail(args: argparse.Namespace, message: str) -> int:
    prog = "flowdip demo" if args.command == "demo" else f"flowdip reproduce {args.experiment}"
    for field, flag in sorted(args.flags.items(), key=lambda item: -len(item[0])):
        if message.startswith(field + " "):
            message = flag + message[len(field) :]
            break
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


def _reproduce(args: argparse.Namespace) -> int:
    from .experiments import reproduce

    experiment = EXPERIMENTS[args.experiment]
    cls = experiment.options_class()
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if f.name in args}
    for field in dataclasses.fields(cls):
        if field.metadata.get("needs_out") and overrides.get(field.name) and "out" not in args:
            return _fail(args, f"{args.flags[field.name]} needs --out (where to write)")
    try:
        options = cls.quick(**overrides) if args.quick else cls(**overrides)
    except ValueError as error:
        return _fail(args, str(error))
    workers, address = getattr(args, "workers", None), getattr(args, "scheduler", None)
    if workers is not None and address is not None:
        return _fail(args, "--workers starts a cluster, --scheduler joins one: not both")
    start = time.perf_counter()
    try:
        with _cluster(workers, address):
            paths = reproduce(args.experiment, options, fresh=args.fresh)
    except _NoDask as error:
        return _fail(args, str(error))
    except FolderError as error:
        return _fail(args, str(error))
    except OSError as error:
        # A folder that cannot be made or written (under a file, no permission, disk full).
        return _fail(
            args, f"cannot write {error.filename or getattr(options, 'out', '')}: {error.strerror}"
        )
    return _wrote(start, paths)


class _NoDask(Exception):
    pass


@contextlib.contextmanager
def _cluster(workers: int | None, address: str | None):
    """A Dask cluster's executor for the sweeps of this block (see `flowdip.use_executor`):
    a local one of `workers` processes, or the one whose scheduler is at `address`."""
    if workers is None and address is None:
        yield
        return
    try:
        from dask import distributed
    except ImportError:
        raise _NoDask(
            f"{'--workers' if address is None else '--scheduler'} runs sweeps on Dask, which is "
            "not installed: pip install 'flowdip[cluster]'"
        ) from None
    from . import use_executor

    with contextlib.ExitStack() as stack:
        if address is None:
            # One thread per worker: a chunk already uses every core XLA gives it.
            cluster = stack.enter_context(
                distributed.LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
                )
            )
            address = cluster.scheduler_address
        client = stack.enter_context(distributed.Client(address))
        count = len(client.scheduler_info()["workers"])
        print(f"Dask cluster at {address}: {count} worker{'s' * (count != 1)}", flush=True)
        stack.enter_context(use_executor(client.get_executor()))
        yield


def _plot(folder: pathlib.Path) -> int:
    from .experiments import redraw

    if not folder.is_dir():
        print(f"flowdip plot: error: {folder}: no such folder", file=sys.stderr)
        return 2
    import jax

    jax.config.update("jax_enable_x64", True)
    start = time.perf_counter()
    try:
        _, paths = redraw(folder)
    except (FolderError, OSError) as error:
        print(f"flowdip plot: error: {error}", file=sys.stderr)
        return 2
    return _wrote(start, paths)


def _wrote(start: float, paths: dict) -> int:
    """Ends a long command by naming the files it wrote; the exit status 0."""
    print(f"\nDone in {time.perf_counter() - start:.1f} s. Wrote:")
    for path in paths.values():
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
