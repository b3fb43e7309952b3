"""The output folder of an experiment: `experiment.json` (which experiment wrote it, with which
options, whether it finished) and the one rule for running into a folder that is not empty."""

import dataclasses
import json
import os
import pathlib
import shutil
import time
import typing


RECORD = "experiment.json"
#: Options that do not make another run: where it is written and whether it shows progress.
_NOT_COMPARED = ("out", "progress")


class FolderError(ValueError):
    """An output folder that cannot take this run (see `flowdip.experiments.reproduce`)."""


def to_json(value):
    """Options values as JSON values (paths as strings, tuples as lists)."""
    if isinstance(value, os.PathLike):
        return str(value)
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


def _from_json(value):
    if isinstance(value, list):
        return tuple(_from_json(v) for v in value)
    if isinstance(value, dict):
        return {k: _from_json(v) for k, v in value.items()}
    return value


def options_json(options) -> dict:
    """Every field of an options dataclass, as JSON values."""
    return {f.name: to_json(getattr(options, f.name)) for f in dataclasses.fields(options)}


def read_record(folder: pathlib.Path) -> dict:
    """The `experiment.json` of `folder`."""
    path = pathlib.Path(folder) / RECORD
    if not path.is_file():
        raise FolderError(f"{folder} holds no {RECORD}: it was not written by flowdip reproduce.")
    return json.loads(path.read_text())


def read_options(folder: pathlib.Path, cls: type, **replace):
    """The options recorded in `folder`, as `cls`, with the fields `replace` (at least `out`,
    the folder as it is now, which may have moved since)."""
    saved = read_record(folder)["options"]
    known = {f.name for f in dataclasses.fields(cls)}
    values = {k: _from_json(v) for k, v in saved.items() if k in known}
    return cls(**{**values, **replace})


def _differences(mine: dict, theirs: dict) -> list[str]:
    out = []
    for name in sorted(set(mine) | set(theirs)):
        if name in _NOT_COMPARED or mine.get(name) == theirs.get(name):
            continue
        out.append(f"{name} = {theirs.get(name)!r} there, {mine.get(name)!r} here")
    return out


def start(name: str, options, *, fresh: bool) -> None:
    """Checks `options.out` against the rule of `flowdip.experiments.reproduce`, clears it
    with `fresh`, and records this run there as unfinished."""
    out = pathlib.Path(options.out)
    if out.exists() and not out.is_dir():
        raise FolderError(f"--out {out}: is a file, not a folder.")
    record = out / RECORD
    if fresh and record.is_file():
        shutil.rmtree(out)
    mine = options_json(options)
    if out.is_dir() and any(out.iterdir()):
        if not record.is_file():
            raise FolderError(
                f"--out {out}: the folder holds files but no {RECORD} (not written by flowdip "
                "reproduce); choose an empty or new folder."
            )
        theirs = json.loads(record.read_text())
        if theirs.get("experiment") != name:
            raise FolderError(
                f"--out {out}: holds a run of {theirs.get('experiment')!r}, not {name}; choose "
                "another folder, or pass --fresh to delete it and start over."
            )
        differ = _differences(mine, theirs.get("options", {}))
        if differ:
            raise FolderError(
                f"--out {out}: holds a run of {name} with other arguments ({'; '.join(differ)}), "
                "which this one cannot resume; choose another folder, or pass --fresh to "
                "delete it and start over."
            )
    out.mkdir(parents=True, exist_ok=True)
    _write(out, dict(experiment=name, options=mine, complete=False, started=_now()))


def finish(out: pathlib.Path, wall: float) -> None:
    """Marks the run recorded in `out` as finished."""
    record = read_record(out)
    record.update(complete=True, finished=_now(), wall_seconds=round(wall, 3))
    _write(pathlib.Path(out), record)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _write(out: pathlib.Path, record: dict) -> None:
    tmp = out / (RECORD + ".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, out / RECORD)


def field_help(cls: type) -> dict[str, str]:
    """The description of each field in the `**Arguments:**` list of the docstrings of `cls`
    and its bases: lines `` - `name`: text `` or `` - `a`, `b`: text `` (continued on the
    indented lines below)."""
    helps: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        doc = klass.__dict__.get("__doc__") or ""
        current: list[str] = []
        for line in doc.splitlines():
            stripped = line.strip()
            if stripped.startswith("- `"):
                head, _, text = stripped[2:].partition(":")
                current = [n.strip(" `") for n in head.split(",")]
                for name in current:
                    helps[name] = text.strip()
            elif current and stripped and line.startswith("      "):
                for name in current:
                    helps[name] += " " + stripped
            else:
                current = []
    return helps


def hints(cls: type) -> dict[str, typing.Any]:
    """The resolved annotations of the fields of `cls`."""
    return typing.get_type_hints(cls)


def save_tree(path: pathlib.Path, tree: dict) -> None:
    """Writes nested dicts and lists of arrays, numbers and strings to one `.npz` file (keys
    joined by `/`), for [`load_tree`][] to read back."""
    import numpy as np

    flat: dict = {}

    def walk(value, key):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{key}/{k}" if key else str(k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{key}/{i}")
        else:
            flat[key] = np.asarray(value)

    walk(tree, "")
    np.savez(path, **flat)


def load_tree(path: pathlib.Path) -> dict:
    """Reads a file written by `save_tree` (0-d arrays as Python numbers and strings)."""
    import numpy as np

    tree: dict = {}
    with np.load(path) as data:
        for key in data.files:
            node, parts = tree, key.split("/")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            value = data[key]
            node[parts[-1]] = value.item() if value.ndim == 0 else value

    def lists(node):
        if not isinstance(node, dict):
            return node
        node = {k: lists(v) for k, v in node.items()}
        if node and all(k.isdigit() for k in node):
            return [node[str(i)] for i in range(len(node))]
        return node

    return lists(tree)
