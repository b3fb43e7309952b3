"""A sweep's provenance and storage: the config that identifies it, its folder (manifest
`sweep.json`, one file per chunk), the assembled `xarray.Dataset` and its netCDF file."""

import dataclasses
import enum
import functools
import hashlib
import json
import math
import os
import pathlib
import subprocess
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .._dynamics import AbstractDynamics, LossBelow
from .._solve import can_segment, horizon_of, RESULTS
from .folder import (
    locked,
    read_finished,
    read_manifest,
    refuse_links,
    SweepFolderError,
    write_atomic,
)
from .plan import Chunk, plan_chunks
from .protocol import Grid, Instance
from .record import DIAGNOSTICS_VERSION, variables


def protocol(
    grid: Grid,
    instance: Instance,
    dynamics: AbstractDynamics,
    horizon: int | float,
    stop: LossBelow | None,
    seed: int,
) -> dict:
    """The entries of a sweep's config that fix what each run computes (how the runs are
    batched only changes round-off).

    **Returns:** a JSON-ready dict: `instance`, `dynamics` and `stop` as their reprs for a
    reader (the dynamics' repr shows no array values, hence `step_size`), and `values`, the
    `fingerprint` of all three, which any change of any of their values changes.
    """
    return dict(
        values=fingerprint(instance, dynamics, stop),
        grid=dataclasses.asdict(grid),
        instance={f.name: repr(getattr(instance, f.name)) for f in dataclasses.fields(instance)},
        dynamics=repr(dynamics),
        step_size=math.nan if dynamics.step_size is None else float(dynamics.step_size),
        horizon=horizon,
        stop=repr(stop),
        seed=seed,
    )


def config(
    grid: Grid,
    instance: Instance,
    dynamics: AbstractDynamics,
    horizon: int | float,
    stop: LossBelow | None,
    seed: int,
    chunk_size: int,
    bucket_ratio: float,
    pad_to: tuple[int, int, int] | None = None,
    *,
    diagnostics: bool = False,
    reachability: bool = False,
    compact: bool = True,
) -> dict:
    """The config of a sweep of these arguments (as [`flowdip.sweep`][] takes them, with
    `horizon` from `horizon_of`): what its folder's manifest and its dataset record.

    **Returns:** a JSON-ready dict; `diagnostics` and `compact` appear only when they differ
    from a plain sweep, so that folders of plain sweeps written before they existed resume.
    `diagnostics` holds the version of the diagnostics recorded: `true` for the sharpness and
    loss-rise variables, `DIAGNOSTICS_VERSION` when the reachability variables are recorded
    too (see `record.variables`).
    """
    extra = {} if pad_to is None else dict(pad_to=[int(v) for v in pad_to])
    out = dict(
        **extra,
        **protocol(grid, instance, dynamics, horizon, stop, seed),
        chunk_size=chunk_size,
        bucket_ratio=bucket_ratio,
        dtype=str(jnp.result_type(float)),
    )
    if reachability:
        out["diagnostics"] = DIAGNOSTICS_VERSION
    elif diagnostics:
        out["diagnostics"] = True
    if not compact and can_segment(dynamics):
        out["compact"] = False
    return out


def diagnostics_version(config: dict) -> int:
    """The diagnostics version of a sweep's config: 0 without diagnostics, 1 (`true`) for the
    sharpness and loss-rise variables, `DIAGNOSTICS_VERSION` with reachability too."""
    return int(config.get("diagnostics", False))


def _feed(h, obj) -> None:
    t = type(obj)
    name = f"{t.__module__}.{t.__qualname__}"
    if obj is None or isinstance(obj, bool | int | float | complex | str | bytes):
        h.update(f"{name}:{obj!r};".encode())  # a float's repr round-trips exactly
    elif isinstance(obj, jax.Array | np.ndarray | np.generic):
        if jnp.issubdtype(obj.dtype, jax.dtypes.prng_key):
            h.update(f"key:{jax.random.key_impl(obj)};".encode())
            obj = jax.random.key_data(obj)
        a = np.ascontiguousarray(obj)
        h.update(f"array:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    elif isinstance(obj, tuple | list):
        h.update(f"{name}[{len(obj)}](".encode())
        for v in obj:
            _feed(h, v)
        h.update(b")")
    elif isinstance(obj, dict):
        h.update(f"{name}{{{len(obj)}}}(".encode())
        for key in sorted(obj, key=repr):
            _feed(h, key)
            _feed(h, obj[key])
        h.update(b")")
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        # Equinox modules are dataclasses: array leaves and static fields alike, by name.
        h.update(f"{name}(".encode())
        for field in dataclasses.fields(obj):
            h.update(f"{field.name}=".encode())
            _feed(h, getattr(obj, field.name, None))
        h.update(b")")
    elif isinstance(obj, enum.Enum):
        h.update(f"{name}.{obj.name};".encode())
    elif isinstance(obj, type) or callable(obj):
        h.update(
            f"{name}:{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')};".encode()
        )
    else:
        leaves, treedef = jax.tree_util.tree_flatten(obj)
        if leaves == [obj]:
            h.update(f"{name}:{obj!r};".encode())
        else:
            h.update(f"{name}:{treedef};".encode())
            _feed(h, leaves)


def fingerprint(*objects) -> str:
    """The SHA-256 of the full values of `objects` (PyTrees, dataclasses, Equinox modules):
    every array leaf by dtype, shape and bytes, every static field, and the structure.

    **Returns:** a hex digest.
    """
    h = hashlib.sha256()
    _feed(h, objects)
    return h.hexdigest()


def digest(config: dict) -> str:
    """The SHA-256 of a config (whose `values` fingerprint the instance, dynamics and stop
    rule in full), which tells whether two folders hold the same sweep."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def _distribution():
    import importlib.metadata as md

    return md.distribution("flowdip")


@functools.cache  # once per process: reading package metadata costs milliseconds per sweep
def _versions() -> dict:
    import importlib.metadata as md

    names = ("flowdip", "jax", "jaxlib", "equinox", "diffrax", "optimistix", "lineax", "numpy")
    out = {}
    for name in names:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def _source_root() -> pathlib.Path | None:
    """The folder of flowdip's own repository when flowdip is an editable install of it and
    this very package is imported from there; else `None` (a revision read elsewhere, e.g. in
    a user's repository that holds an installed flowdip, would be the user's)."""
    import importlib.metadata as md
    import tomllib
    import urllib.parse
    import urllib.request

    try:
        info = json.loads(_distribution().read_text("direct_url.json") or "{}")
    except (md.PackageNotFoundError, ValueError):
        return None
    url = urllib.parse.urlparse(str(info.get("url", "")))
    if not (info.get("dir_info") or {}).get("editable") or url.scheme != "file":
        return None
    root = pathlib.Path(urllib.request.url2pathname(url.path)).resolve()
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text())
    except (OSError, ValueError):
        return None
    here = pathlib.Path(__file__).resolve()
    if project.get("project", {}).get("name") != "flowdip" or root not in here.parents:
        return None
    return root if (root / ".git").exists() else None


def _git_revision() -> str:
    root = _source_root()
    return "unknown" if root is None else _revision_at(root)


@functools.cache  # once per process: the code a process runs is the code it imported
def _revision_at(root: pathlib.Path) -> str:
    try:
        git = dict(cwd=root, capture_output=True, text=True, timeout=5)
        rev = subprocess.run(["git", "rev-parse", "HEAD"], check=True, **git).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], **git).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance() -> dict:
    """What wrote a sweep: the installed versions of flowdip and its numerical stack, and
    flowdip's VCS revision when it is an editable install of its own repository ("unknown"
    otherwise)."""
    return dict(versions=_versions(), git_revision=_git_revision())


def result_codes() -> dict[str, int]:
    """The integer of each [`flowdip.RESULTS`][] code, as stored in sweep datasets."""
    return {name: int(item._value) for name, item in RESULTS._name_to_item.items()}


def assemble(grid: Grid, chunks: Sequence[Chunk], results: dict[int, dict], config: dict):
    """The dataset of a sweep from the outputs of its chunks (by chunk index; those missing
    leave NaN and `filled` False), with its provenance in `attrs`."""
    import xarray as xr

    shape = (len(grid.n), len(grid.m), len(grid.k), grid.seeds)
    names = variables(diagnostics_version(config))
    data = {name: np.full(shape, np.nan) for name in names}
    filled = np.zeros(shape, bool)
    n_idx = {v: j for j, v in enumerate(grid.n)}
    m_idx = {v: j for j, v in enumerate(grid.m)}
    k_idx = {v: j for j, v in enumerate(grid.k)}
    for c in chunks:
        res = results.get(c.index)
        if res is None:
            continue
        idx = (
            np.asarray([n_idx[int(v)] for v in res["n"]]),
            np.asarray([m_idx[int(v)] for v in res["m"]]),
            np.asarray([k_idx[int(v)] for v in res["k"]]),
            np.asarray(res["seed"], int),
        )
        for name in names:
            data[name][idx] = res[name]
        filled[idx] = True
    dims = ("n", "m", "k", "seed")
    ds = xr.Dataset(
        {name: (dims, values) for name, values in data.items()},
        coords=dict(n=list(grid.n), m=list(grid.m), k=list(grid.k), seed=np.arange(grid.seeds)),
    )
    ds["filled"] = (dims, filled)
    about = provenance()
    ds.attrs.update(
        config=json.dumps(config),
        versions=json.dumps(about["versions"]),
        git_revision=about["git_revision"],
        result_codes=json.dumps(result_codes()),
        complete=int(filled.all()),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    return ds


def save_dataset(ds, path) -> None:
    """Writes a sweep dataset to netCDF (booleans as 0/1)."""
    ds = ds.copy()
    for name in ds.data_vars:
        if ds[name].dtype == bool:
            ds[name] = ds[name].astype("i1")
    path = pathlib.Path(path)
    write_atomic(path.parent, path.name, ds.to_netcdf(engine="scipy"))


def load_dataset(path):
    """Reads a dataset written by [`flowdip.sweep`][]."""
    import xarray as xr

    with xr.open_dataset(path, engine="scipy") as ds:
        ds = ds.load()
    if "filled" in ds:
        ds["filled"] = ds["filled"].astype(bool)
    return ds


def merge_sweeps(folders: Sequence[str | os.PathLike], out: str | os.PathLike | None = None):
    """Joins the chunk files that shards of one sweep wrote (to one or several folders),
    each chunk checked against the plan and its folder's manifest.

    **Arguments:** `folders`, sweep folders of one sweep; `out`, a folder to write
    `results.nc` to (or `None`).

    **Returns:** the sweep's `xarray.Dataset`.
    """
    if isinstance(folders, str | bytes | os.PathLike) or not folders:
        raise ValueError(
            f"merge_sweeps needs at least one sweep folder: folders must be a non-empty list "
            f"of sweep folders; got folders={folders!r}."
        )
    folders = [pathlib.Path(f) for f in folders]
    manifests = []
    for f in folders:
        refuse_links(f)
        manifest = read_manifest(f)
        if manifest is None:
            raise SweepFolderError(f"{f} is not a sweep folder (it has no sweep.json).")
        manifests.append(manifest)
    if len({m["digest"] for m in manifests}) != 1:
        raise ValueError(
            f"These folders hold sweeps with different arguments: {[str(f) for f in folders]}."
        )
    config = manifests[0]["config"]
    g = config["grid"]
    grid = Grid(n=g["n"], m=g["m"], k=g["k"], seeds=g["seeds"], d=g["d"])
    pad_to = config.get("pad_to")
    chunks = plan_chunks(
        grid,
        chunk_size=config["chunk_size"],
        bucket_ratio=config["bucket_ratio"],
        pad_to=None if pad_to is None else tuple(pad_to),
    )
    diagnostics = diagnostics_version(config)
    results: dict[int, dict] = {}
    for folder, manifest in zip(folders, manifests):
        todo = [c for c in chunks if c.index not in results]
        results.update(read_finished(folder, manifest, todo, diagnostics))
    ds = assemble(grid, chunks, results, config)
    if out is not None:
        out = pathlib.Path(out)
        with locked(out):
            save_dataset(ds, out / "results.nc")
    return ds


def reusable_sweep(
    folder: str | os.PathLike,
    grid: Grid,
    *,
    dynamics: AbstractDynamics,
    num_steps: int | None = None,
    t1: float | None = None,
    stop: LossBelow | None = None,
    instance: Instance = Instance(),
    seed: int = 0,
):
    """The finished sweep in `folder` if it ran the runs that [`flowdip.sweep`][] would run
    for these arguments, cut to the first `grid.seeds` seeds; else `None`.

    A run's key depends only on the base seed, `(n, m)` and its index `s`
    ([`flowdip.run_key`][]), so the first seeds of a sweep with more seeds are exactly the runs
    of one with fewer. How the runs were batched (chunk size, buckets, padding, compaction,
    diagnostics) is not compared: it changes at most round-off. The dynamics are compared by
    their kind and step size (their repr shows no array values), so a sweep of a dynamics
    without a step size (a flow) is never reused.

    **Arguments:** `folder`, a sweep folder; the others as for [`flowdip.sweep`][].

    **Returns:** its `xarray.Dataset` (from `results.nc`, complete), or `None`.
    """
    path = pathlib.Path(folder) / "results.nc"
    if not path.exists():
        return None
    ds = load_dataset(path)
    theirs = json.loads(ds.attrs.get("config", "{}"))
    horizon = horizon_of(dynamics, num_steps=num_steps, t1=t1)
    # Through JSON, as the stored config went: tuples become lists, as there.
    mine = json.loads(json.dumps(protocol(grid, instance, dynamics, horizon, stop, seed)))
    their_grid, my_grid = dict(theirs.get("grid") or {}), mine.pop("grid")
    same = (
        bool(ds.attrs.get("complete", 0))
        and int(their_grid.pop("seeds", 0)) >= my_grid.pop("seeds")
        and their_grid == my_grid
        and _kind(theirs.get("dynamics")) == _kind(mine.pop("dynamics"))
        and all(theirs.get(name) == value for name, value in mine.items())
    )
    return ds.isel(seed=slice(0, grid.seeds)) if same else None


def _kind(dynamics_repr) -> str:
    """The class name in a dynamics' repr."""
    return str(dynamics_repr).split("(", 1)[0]
