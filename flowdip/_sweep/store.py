"""A sweep's provenance and storage: the config that identifies it, its folder (manifest
`sweep.json`, one file per chunk), the assembled `xarray.Dataset` and its netCDF file."""

import dataclasses
import hashlib
import json
import math
import os
import pathlib
import subprocess
import time
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from .._dynamics import AbstractDynamics, LossBelow
from .._solve import can_segment, horizon_of, RESULTS
from .plan import Chunk, plan_chunks
from .protocol import Grid, Instance
from .record import variables


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

    **Returns:** a JSON-ready dict (`instance`, `dynamics` and `stop` as their reprs; the
    dynamics' repr shows no array values, hence `step_size`).
    """
    return dict(
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
    compact: bool = True,
) -> dict:
    """The config of a sweep of these arguments (as [`flowdip.sweep`][] takes them, with
    `horizon` from `horizon_of`): what its folder's manifest and its dataset record.

    **Returns:** a JSON-ready dict; `diagnostics` and `compact` appear only when they differ
    from a plain sweep, so that folders of plain sweeps written before they existed resume.
    """
    extra = {} if pad_to is None else dict(pad_to=[int(v) for v in pad_to])
    out = dict(
        **extra,
        **protocol(grid, instance, dynamics, horizon, stop, seed),
        chunk_size=chunk_size,
        bucket_ratio=bucket_ratio,
        dtype=str(jnp.result_type(float)),
    )
    if diagnostics:
        out["diagnostics"] = True
    if not compact and can_segment(dynamics):
        out["compact"] = False
    return out


def digest(config: dict) -> str:
    """The SHA-256 of a config, which tells whether two folders hold the same sweep."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def open_folder(folder: pathlib.Path, config: dict) -> None:
    """Makes `folder` a sweep folder of `config`: writes its manifest `sweep.json`, or checks
    that the one there is of the same config (raises `ValueError` if not)."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "sweep.json"
    mine = digest(config)
    if manifest.exists():
        old = json.loads(manifest.read_text())
        if old.get("digest") != mine:
            raise ValueError(
                f"{folder} holds a sweep with other arguments ({manifest}); use another "
                "folder, or delete it to start again."
            )
    else:
        manifest.write_text(json.dumps(dict(config=config, digest=mine), indent=1))


def read_chunks(folder: pathlib.Path, chunks: Sequence[Chunk]) -> dict[int, dict]:
    """The outputs of those of `chunks` whose files are in `folder`, by chunk index."""
    results = {}
    for c in chunks:
        path = folder / c.name
        if path.exists():
            with np.load(path) as f:
                results[c.index] = {name: f[name] for name in f.files}
    return results


def write_chunk(folder: pathlib.Path, chunk: Chunk, outputs: dict) -> None:
    """Writes a chunk's outputs to its file in `folder`, whole or not at all (a kill leaves
    no partial file for a resumed sweep to read)."""
    path = folder / chunk.name
    tmp = path.with_suffix(".tmp.npz")
    with open(tmp, "wb") as f:
        np.savez(f, **outputs)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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


def _git_revision() -> str:
    here = pathlib.Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=here, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def result_codes() -> dict[str, int]:
    """The integer of each [`flowdip.RESULTS`][] code, as stored in sweep datasets."""
    return {name: int(item._value) for name, item in RESULTS._name_to_item.items()}


def assemble(grid: Grid, chunks: Sequence[Chunk], results: dict[int, dict], config: dict):
    """The dataset of a sweep from the outputs of its chunks (by chunk index; those missing
    leave NaN and `filled` False), with its provenance in `attrs`."""
    import xarray as xr

    shape = (len(grid.n), len(grid.m), len(grid.k), grid.seeds)
    names = variables(bool(config.get("diagnostics", False)))
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
    ds.attrs.update(
        config=json.dumps(config),
        versions=json.dumps(_versions()),
        git_revision=_git_revision(),
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
    tmp = pathlib.Path(str(path) + ".tmp")
    ds.to_netcdf(tmp, engine="scipy")
    os.replace(tmp, path)


def load_dataset(path):
    """Reads a dataset written by [`flowdip.sweep`][]."""
    import xarray as xr

    with xr.open_dataset(path, engine="scipy") as ds:
        ds = ds.load()
    if "filled" in ds:
        ds["filled"] = ds["filled"].astype(bool)
    return ds


def merge_sweeps(folders: Sequence[str | os.PathLike], out: str | os.PathLike | None = None):
    """Joins the chunk files that shards of one sweep wrote (to one or several folders)."""
    if isinstance(folders, str | bytes | os.PathLike) or not folders:
        raise ValueError(f"folders must be a non-empty list of sweep folders; got {folders!r}.")
    folders = [pathlib.Path(f) for f in folders]
    manifests = [json.loads((f / "sweep.json").read_text()) for f in folders]
    if len({m["digest"] for m in manifests}) != 1:
        raise ValueError("These folders hold sweeps with different arguments.")
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
    results: dict[int, dict] = {}
    for folder in folders:
        results.update(read_chunks(folder, [c for c in chunks if c.index not in results]))
    ds = assemble(grid, chunks, results, config)
    if out is not None:
        pathlib.Path(out).mkdir(parents=True, exist_ok=True)
        save_dataset(ds, pathlib.Path(out) / "results.nc")
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
