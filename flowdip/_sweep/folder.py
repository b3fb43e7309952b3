"""A sweep folder on disk: its lock, its manifest `sweep.json`, its chunk files, each
checked against the plan and a checksum, and every file written whole or not at all."""

import contextlib
import fcntl
import hashlib
import io
import json
import os
import pathlib
import tempfile
from collections.abc import Iterator, Sequence

import jax.random as jr
import numpy as np

from .plan import Chunk
from .protocol import run_keys
from .record import variables


#: The manifest format this version writes and reads (older folders have none).
FORMAT = 2
MANIFEST = "sweep.json"
LOCK = "sweep.lock"
#: What a chunk file holds besides the per-run variables.
RUN_IDS = ("n", "m", "k", "seed")
_META = ("chunk_index", "sweep_digest", "key_data", "checksum")


class SweepFolderError(ValueError):
    """A sweep folder that cannot be used as it is: the message names the file, what is
    wrong with it and the way out."""


def refuse_links(folder: pathlib.Path) -> None:
    """Raises if `folder` or any of its entries is a symbolic link: a sweep writes only
    files it owns, never through a link to somewhere else."""
    if folder.is_symlink():
        raise SweepFolderError(f"{folder} is a symbolic link; give a sweep a real folder.")
    if not folder.exists():
        return
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_symlink():
                raise SweepFolderError(
                    f"{folder / entry.name} is a symbolic link; a sweep folder holds only "
                    "its own files: remove the link."
                )


@contextlib.contextmanager
def locked(folder: pathlib.Path) -> Iterator[None]:
    """Holds `folder`'s lock file (`sweep.lock`, `flock`): one process at a time writes a
    folder. Raises at once if another holds it."""
    refuse_links(folder)
    folder.mkdir(parents=True, exist_ok=True)
    refuse_links(folder)  # again: a link may have appeared meanwhile
    path = folder / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        raise SweepFolderError(f"cannot open the lock file {path}: {e}.") from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SweepFolderError(
                f"another sweep is writing {folder} (it holds {path}); wait for it to finish, "
                "or give this sweep another folder (shards run at once each need their own "
                "folder; join them with merge_sweeps)."
            ) from None
        # Temporary files of a killed writer: ours to remove now that we hold the lock.
        for entry in folder.iterdir():
            if entry.name.startswith(".") and entry.name.endswith(".tmp") and entry.is_file():
                entry.unlink(missing_ok=True)
        yield
    finally:
        os.close(fd)  # releases the lock


def write_atomic(folder: pathlib.Path, name: str, data: bytes | memoryview) -> None:
    """Writes `folder/name` whole or not at all: to a fresh temporary file of a unique name
    in `folder` (created exclusively, never through a link), then renamed over `name`."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / name)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a crash
    finally:
        os.close(dir_fd)


def read_bytes(path: pathlib.Path) -> bytes:
    """The bytes of `path`, refusing a symbolic link."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def checksum(arrays: dict) -> str:
    """The SHA-256 of named arrays: names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _key_data(chunk: Chunk, seed: int) -> np.ndarray:
    nms = np.asarray([(n, m, s) for n, m, _, s in chunk.runs], np.int32)
    return np.asarray(jr.key_data(run_keys(seed, nms)))


def chunk_bytes(chunk: Chunk, outputs: dict, digest: str, seed: int) -> tuple[bytes, str]:
    """A chunk's file: its outputs, its index, the sweep's digest, its run keys and the
    checksum of all of them.

    **Returns:** the file's bytes and the checksum (which the manifest records).
    """
    arrays = {name: np.asarray(v) for name, v in outputs.items()}
    arrays.update(
        chunk_index=np.asarray(chunk.index, np.int64),
        sweep_digest=np.asarray(digest),
        key_data=_key_data(chunk, seed),
    )
    sha = checksum(arrays)
    buffer = io.BytesIO()
    np.savez(buffer, checksum=np.asarray(sha), **arrays)
    return buffer.getvalue(), sha


def _fail(path: pathlib.Path, what: str) -> SweepFolderError:
    return SweepFolderError(f"{path}: {what}; delete it to recompute it.")


def read_chunk(
    path: pathlib.Path, chunk: Chunk, *, digest: str, seed: int, diagnostics: int
) -> tuple[dict, str]:
    """A chunk's outputs from its file, checked: its index, sweep, runs, run keys, variables,
    shapes and checksum must be those of `chunk` in this sweep.

    **Returns:** the outputs (per-run variables and `n`, `m`, `k`, `seed`) and the checksum.
    **Raises:** `SweepFolderError` naming the file and what is wrong.
    """
    try:
        raw = read_bytes(path)
        with np.load(io.BytesIO(raw), allow_pickle=False) as f:
            arrays = {name: f[name] for name in f.files}
    except Exception as e:  # a zip archive cut short or damaged fails in many ways
        raise _fail(path, f"unreadable ({type(e).__name__}: {e})") from e
    names = variables(diagnostics) + RUN_IDS
    for name in names + _META:
        if name not in arrays:
            raise _fail(path, f"it lacks the variable {name!r}")
    extra = sorted(set(arrays) - set(names) - set(_META))
    if extra:
        raise _fail(path, f"it holds variables a sweep does not write: {extra}")
    index = arrays["chunk_index"]
    if index.shape != () or index.dtype.kind not in "iu" or int(index) != chunk.index:
        raise _fail(path, f"it holds chunk {index} (a copy of another chunk?), not {chunk.index}")
    if str(arrays["sweep_digest"]) != digest:
        raise _fail(path, "it was written by a sweep with other arguments")
    R = len(chunk.runs)
    for name in names:
        if arrays[name].shape != (R,):
            raise _fail(path, f"{name} has shape {arrays[name].shape}, expected ({R},)")
    runs = tuple(zip(*(arrays[name].tolist() for name in RUN_IDS)))
    if runs != chunk.runs:
        raise _fail(path, "its runs (n, m, k, seed) are not those the plan gives this chunk")
    keys = _key_data(chunk, seed)
    if arrays["key_data"].shape != keys.shape or not np.array_equal(arrays["key_data"], keys):
        raise _fail(path, "its run keys are not those of its runs")
    sha = str(arrays.pop("checksum"))
    if checksum(arrays) != sha:
        raise _fail(path, "its arrays do not match its checksum (edited or damaged)")
    return {name: arrays[name] for name in names}, sha


def read_manifest(folder: pathlib.Path) -> dict | None:
    """The manifest of `folder` (`None` if it has none), in this version's format.

    **Raises:** `SweepFolderError` if it is unreadable or of an older or newer format.
    """
    path = folder / MANIFEST
    if not path.exists() and not path.is_symlink():
        return None
    try:
        manifest = json.loads(read_bytes(path))
    except (OSError, ValueError) as e:
        raise SweepFolderError(
            f"{path} is unreadable ({e}); delete it (the chunk files are then checked against "
            "their own checksums and recorded again), or delete the folder to start again."
        ) from e
    found = manifest.get("format") if isinstance(manifest, dict) else None
    if found != FORMAT:
        older = found is None or (isinstance(found, int) and found < FORMAT)
        raise SweepFolderError(
            f"{path} was written by {'an older' if older else 'a newer'} flowdip (manifest "
            f"format {found}, this one reads {FORMAT}), whose chunks this one cannot check: "
            "finish or merge the sweep with that version, or delete the folder (or give "
            "another) to run it again with this one."
        )
    return manifest


class Folder:
    """An open sweep folder (see `open_folder`): reads checked chunks, writes new ones and
    records each one's checksum in the manifest."""

    def __init__(self, path: pathlib.Path, manifest: dict, diagnostics: int):
        self.path, self.manifest, self.diagnostics = path, manifest, diagnostics

    @property
    def digest(self) -> str:
        return self.manifest["digest"]

    def _save_manifest(self) -> None:
        write_atomic(self.path, MANIFEST, json.dumps(self.manifest, indent=1).encode())

    def read(self, chunks: Sequence[Chunk]) -> dict[int, dict]:
        """The outputs of those of `chunks` that are finished here, each checked."""
        return read_finished(self.path, self.manifest, chunks, self.diagnostics, self.record)

    def record(self, chunk: Chunk, sha: str) -> None:
        """Records a finished chunk's checksum in the manifest."""
        self.manifest["chunks"][chunk.name] = sha
        self._save_manifest()

    def write(self, chunk: Chunk, outputs: dict) -> None:
        """Writes a chunk's file, then records it in the manifest."""
        seed = int(self.manifest["config"]["seed"])
        data, sha = chunk_bytes(chunk, outputs, self.digest, seed)
        write_atomic(self.path, chunk.name, data)
        self.record(chunk, sha)


def read_finished(
    folder: pathlib.Path, manifest: dict, chunks: Sequence[Chunk], diagnostics: int, record=None
) -> dict[int, dict]:
    """The outputs of those of `chunks` that are finished in `folder` (listed in its
    manifest, or a file there), each checked against the plan and the manifest's checksum.

    A file the manifest does not list (the writer was killed between the two) is used if its
    own checksum holds, and handed to `record`.
    """
    listed = manifest["chunks"]
    results = {}
    for c in chunks:
        path = folder / c.name
        if not (path.exists() or path.is_symlink()):
            if c.name in listed:
                raise SweepFolderError(
                    f"{folder / MANIFEST} records {c.name} as finished but {path} is missing; "
                    f"remove its entry from 'chunks' in {MANIFEST} to recompute it."
                )
            continue
        seed = int(manifest["config"]["seed"])
        res, sha = read_chunk(
            path, c, digest=manifest["digest"], seed=seed, diagnostics=diagnostics
        )
        if c.name in listed and listed[c.name] != sha:
            raise _fail(path, f"its checksum differs from the one {MANIFEST} records")
        if c.name not in listed and record is not None:
            record(c, sha)
        results[c.index] = res
    return results


def open_folder(folder: pathlib.Path, config: dict, digest: str, provenance: dict) -> Folder:
    """Makes `folder` (locked by the caller) a sweep folder of `config`: writes its manifest
    (with `provenance`), or checks that the one there is of the same sweep.

    **Raises:** `SweepFolderError` if the folder holds another sweep or an unusable manifest.
    """
    manifest = read_manifest(folder)
    if manifest is None:
        manifest = dict(format=FORMAT, digest=digest, config=config, chunks={}, **provenance)
        opened = Folder(folder, manifest, int(config.get("diagnostics", False)))
        opened._save_manifest()
        return opened
    if manifest.get("digest") != digest:
        raise SweepFolderError(
            f"{folder} holds a sweep with other arguments ({folder / MANIFEST}); use another "
            "folder, or delete it to start again."
        )
    return Folder(folder, manifest, int(config.get("diagnostics", False)))
