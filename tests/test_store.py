"""Sweep folders: digests of full values, checked chunks, atomic writes, the lock, provenance,
and a resume after SIGKILL that is bit-identical to an uninterrupted sweep."""

import fcntl
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import flowdip as fd
from flowdip._sweep import engine, folder as folder_, store


ROOT = pathlib.Path(__file__).resolve().parents[1]
GRID = fd.Grid(n=[6], m=[4], k=[5, 12], seeds=4, d=3)  # 8 runs: 4 chunks of 2
KWARGS = dict(
    dynamics=fd.GradientDescent(0.5),
    num_steps=200,
    stop=fd.LossBelow(1e-4),
    instance=fd.Instance(scaling="1/m"),
    chunk_size=2,
    progress=False,
)
NAMES = [f"chunk_{j:05d}.npz" for j in range(4)]


def _sweep(out=None, **kwargs):
    return fd.sweep(GRID, out=out, **(KWARGS | kwargs))


def _bitwise(a, b):
    assert set(a.data_vars) == set(b.data_vars)
    for name in a.data_vars:
        x, y = a[name].values, b[name].values
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), name


@pytest.fixture(scope="module")
def reference():
    return _sweep()


@pytest.fixture(scope="module")
def finished(tmp_path_factory, reference):
    out = tmp_path_factory.mktemp("finished")
    _bitwise(reference, _sweep(out))
    return out


def test_digest_sees_array_values_that_reprs_hide():
    # Equinox prints these fields as `f64[]`: the reprs are equal, the values are not.
    pairs = [
        (fd.InertialDescent(0.5, alpha=0.1), fd.InertialDescent(0.5, alpha=0.9)),
        (fd.InertialFlow(1.0), fd.InertialFlow(3.0)),
    ]
    for a, b in pairs:
        assert repr(a) == repr(b)
        assert store.fingerprint(a) != store.fingerprint(b)
        configs = [store.config(GRID, fd.Instance(), d, 200, None, 0, 2, 4.0) for d in (a, b)]
        assert store.digest(configs[0]) != store.digest(configs[1])
    assert store.fingerprint(fd.InertialDescent(0.5, 0.1)) == store.fingerprint(
        fd.InertialDescent(0.5, 0.1)
    )
    assert store.fingerprint(fd.Instance(noise_std=0.1)) != store.fingerprint(fd.Instance())


def test_two_settings_differing_in_an_array_field_share_no_folder(tmp_path):
    grid = fd.Grid(n=[6], m=[4], k=[5], seeds=1, d=3)
    kwargs = dict(num_steps=20, chunk_size=2, progress=False, out=tmp_path)
    fd.sweep(grid, dynamics=fd.InertialDescent(0.5, alpha=0.1), **kwargs)
    with pytest.raises(ValueError, match="other arguments"):
        fd.sweep(grid, dynamics=fd.InertialDescent(0.5, alpha=0.9), **kwargs)


def test_a_finished_folder_resumes_to_the_same_numbers(finished, reference):
    manifest = json.loads((finished / "sweep.json").read_text())
    assert manifest["format"] == folder_.FORMAT and sorted(manifest["chunks"]) == NAMES
    assert "versions" in manifest and "git_revision" in manifest
    assert manifest["config"]["values"] == store.fingerprint(
        KWARGS["instance"], KWARGS["dynamics"], KWARGS["stop"]
    )
    assert not [p for p in finished.iterdir() if p.name.endswith(".tmp")]
    _bitwise(reference, _sweep(finished))
    _bitwise(reference, fd.merge_sweeps([finished]))


def _rewrite(path, **changes):
    with np.load(path) as f:
        arrays = {name: f[name] for name in f.files}
    arrays.update(changes)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _resign(path):
    """Recomputes the file's own checksum (an edit made to look consistent)."""
    with np.load(path) as f:
        arrays = {name: f[name] for name in f.files if name != "checksum"}
    _rewrite(path, checksum=np.asarray(folder_.checksum(arrays)))


def _flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def _manifest_lists_a_missing_chunk(folder):
    (folder / NAMES[2]).unlink()


CORRUPTIONS = {
    "copy of another chunk": (
        lambda f: shutil.copyfile(f / NAMES[1], f / NAMES[0]),
        "holds chunk 1",
    ),
    "arrays cut short": (
        lambda f: _rewrite(f / NAMES[0], final_loss=np.zeros(1)),
        r"final_loss has shape \(1,\), expected \(2,\)",
    ),
    "other runs": (lambda f: _rewrite(f / NAMES[0], seed=np.asarray([0, 3])), "its runs"),
    "missing variable": (
        lambda f: _drop(f / NAMES[0], "sigma0"),
        "lacks the variable 'sigma0'",
    ),
    "edited value": (
        lambda f: _rewrite(f / NAMES[0], num_steps=np.asarray([7, 7])),
        "do not match its checksum",
    ),
    "edited value, checksum recomputed": (
        lambda f: (_rewrite(f / NAMES[0], num_steps=np.asarray([7, 7])), _resign(f / NAMES[0])),
        "differs from the one sweep.json records",
    ),
    "truncated file": (
        lambda f: (f / NAMES[1]).write_bytes((f / NAMES[1]).read_bytes()[:300]),
        "unreadable",
    ),
    "empty file": (lambda f: (f / NAMES[1]).write_bytes(b""), "unreadable"),
    "flipped byte": (lambda f: _flip(f / NAMES[3]), "chunk_00003.npz: "),
    "missing chunk listed in the manifest": (_manifest_lists_a_missing_chunk, "is missing"),
    "symlink as a temporary name": (
        lambda f: os.symlink(f.parent / "target", f / "chunk_00001.tmp.npz"),
        "symbolic link",
    ),
    "symlink as a chunk": (
        lambda f: (os.unlink(f / NAMES[1]), os.symlink(f.parent / "target", f / NAMES[1])),
        "symbolic link",
    ),
    "symlink as results.nc.tmp": (
        lambda f: os.symlink(f.parent / "target", f / "results.nc.tmp"),
        "symbolic link",
    ),
}


def _drop(path, name):
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files if k != name}
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize("how", list(CORRUPTIONS))
def test_a_damaged_folder_is_refused_naming_the_file(how, finished, tmp_path, monkeypatch):
    folder = tmp_path / "sweep"
    shutil.copytree(finished, folder)
    target = tmp_path / "target"
    target.write_bytes(b"precious")
    damage, message = CORRUPTIONS[how]
    damage(folder)
    monkeypatch.setattr(engine, "execute", _no_compute)
    for attempt in (lambda: _sweep(folder), lambda: fd.merge_sweeps([folder])):
        with pytest.raises(folder_.SweepFolderError, match=message) as info:
            attempt()
        text = str(info.value)
        assert str(folder) in text
        assert "delete" in text or "remove" in text
    assert target.read_bytes() == b"precious"  # nothing was written through a link


def _no_compute(*args):
    raise AssertionError("a damaged folder must be refused before any chunk runs")


def test_an_old_manifest_is_refused_with_the_way_out(tmp_path):
    (tmp_path / "sweep.json").write_text(json.dumps(dict(config={}, digest="0" * 64)))
    with pytest.raises(folder_.SweepFolderError, match="older flowdip.*delete the folder"):
        _sweep(tmp_path)


def test_a_second_writer_is_refused_while_the_lock_is_held(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    fd_ = os.open(tmp_path / "sweep.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd_, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(folder_.SweepFolderError, match="another sweep is writing"):
            _sweep(tmp_path)
    finally:
        os.close(fd_)
    assert not (tmp_path / "sweep.json").exists()


def test_a_linked_folder_is_refused(finished, tmp_path):
    (tmp_path / "link").symlink_to(finished, target_is_directory=True)
    for attempt in (
        lambda: _sweep(tmp_path / "link"),
        lambda: fd.merge_sweeps([tmp_path / "link"]),
    ):
        with pytest.raises(folder_.SweepFolderError, match="link is a symbolic link"):
            attempt()


def test_merge_of_nothing_is_refused():
    with pytest.raises(ValueError, match="at least one"):
        fd.merge_sweeps([])


class _Dist:
    def __init__(self, direct_url):
        self.direct_url = direct_url

    def read_text(self, name):
        return None if self.direct_url is None else json.dumps(self.direct_url)


def test_revision_only_of_an_editable_install_of_flowdip_itself(tmp_path, monkeypatch):
    other = tmp_path / "user-repo"
    other.mkdir()
    (other / "pyproject.toml").write_text('[project]\nname = "mine"\n')
    (other / ".git").mkdir()
    cases = {
        "unknown": [
            None,  # no direct_url.json: installed from an index
            dict(url=ROOT.as_uri(), dir_info={}),  # installed from a folder, not editable
            dict(url=other.as_uri(), dir_info=dict(editable=True)),  # not flowdip's repository
            dict(url="https://example.org/flowdip.zip", dir_info=dict(editable=True)),
        ],
    }
    for direct_url in cases["unknown"]:
        monkeypatch.setattr(store, "_distribution", lambda: _Dist(direct_url))
        assert store.provenance()["git_revision"] == "unknown", direct_url
    editable = dict(url=ROOT.as_uri(), dir_info=dict(editable=True))
    monkeypatch.setattr(store, "_distribution", lambda: _Dist(editable))
    rev = store.provenance()["git_revision"]
    if (ROOT / ".git").exists():
        assert len(rev.split("-")[0]) == 40, rev
    assert "flowdip" in store.provenance()["versions"]


_CHILD = """
import sys, time, jax
for k, v in (("jax_enable_x64", True), ("jax_numpy_rank_promotion", "raise"),
             ("jax_numpy_dtype_promotion", "strict")):
    jax.config.update(k, v)
import flowdip as fd
from flowdip._sweep import engine
real = engine.execute
def slow(*args):
    out = real(*args)
    time.sleep(0.5)  # a slow chunk: time for the parent to kill between files
    return out
engine.execute = slow
fd.sweep(fd.Grid(n=[6], m=[4], k=[5, 12], seeds=4, d=3), dynamics=fd.GradientDescent(0.5),
         num_steps=200, stop=fd.LossBelow(1e-4), instance=fd.Instance(scaling="1/m"),
         chunk_size=2, progress=False, out=sys.argv[1])
"""


def _start_and_kill(out: pathlib.Path, when: str) -> None:
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(out)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 240
        while not (out / when).exists():
            assert child.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()


def test_resume_after_sigkill_is_bit_identical(reference, tmp_path, monkeypatch):
    out = tmp_path / "killed"
    _start_and_kill(out, NAMES[0])
    _start_and_kill(out, NAMES[2])
    assert not (out / NAMES[3]).exists() and not (out / "results.nc").exists()
    real, ran = engine.execute, []
    monkeypatch.setattr(engine, "execute", lambda c, *a: ran.append(c.index) or real(c, *a))
    resumed = _sweep(out)
    assert ran == [3]  # the chunks the killed sweeps wrote were reused
    _bitwise(reference, resumed)
    _bitwise(reference, fd.load_dataset(out / "results.nc"))
    assert sorted(json.loads((out / "sweep.json").read_text())["chunks"]) == NAMES
