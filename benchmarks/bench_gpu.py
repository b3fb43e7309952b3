"""Every figure of the benchmarks and the P1 quick reproductions, in one run meant to fit in
five minutes on a GPU (`make bench-gpu`).

Each part runs in a process of its own, so that the GPU memory JAX takes is freed between
parts and a part can be stopped at the budget; its output is printed as it comes, then its
wall time, and a table at the end sums them up. The parts, in order:

- `ssvm-fig1`, `ssvm-fig2`: `flowdip reproduce NAME --quick`, twice, each run into a temporary
  folder of its own, both with one fresh temporary compilation cache
  (`FLOWDIP_COMPILATION_CACHE`) that the first run fills and the second reads: both walls,
  their ratio, and the `summary.txt` written;
- `bench_core`, `bench_sweep`, `bench_flow_sweep`, `bench_flow`, `bench_images`: the benchmark
  scripts with the arguments of `BENCHMARKS` below (their defaults, but fewer repeats and two
  of the six cells of `bench_flow`);
- `flow-vs-descent-phase`: as the first two, last because it is the longest (on a 2-core CPU
  its quick version takes minutes).

    python benchmarks/bench_gpu.py [--budget 300] [--only ssvm-fig1,bench_core,...]

Once `--budget` seconds (the whole run) are spent, the part running is stopped and those left
are skipped, each named. This script itself does not import JAX (which would take the GPU's
memory from the parts); the parts import the flowdip of this checkout. On a machine without a
GPU it measures the CPU, and says so.
"""

import argparse
import dataclasses
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time


ROOT = pathlib.Path(__file__).resolve().parent.parent

#: The arguments each benchmark runs with: small enough for the whole run to fit in minutes.
BENCHMARKS = {
    "bench_core": [],
    "bench_sweep": [],
    "bench_flow_sweep": ["--repeat", "1"],
    # The run of the stiff Figure 1 cell whose Tsit5 takes > 10⁵ steps (the wall-ratio
    # target) and the widest square cell (the step-ratio target at k = 8192).
    "bench_flow": ["--repeats", "1", "--cells", "10,512,28,1", "40,40,8192"],
    "bench_images": [],
}
#: The quick reproductions, each run twice (a cold, then a warm compilation cache).
REPRODUCTIONS = ("ssvm-fig1", "ssvm-fig2", "flow-vs-descent-phase")
PARTS = ("ssvm-fig1", "ssvm-fig2", *BENCHMARKS, "flow-vs-descent-phase")

DEVICE_REPORT = """
import importlib.metadata as md, platform
import jax
names = ("flowdip", "jax", "jaxlib", "jax-cuda12-plugin", "equinox", "diffrax", "optimistix",
         "lineax", "numpy")
found = []
for name in names:
    try:
        found.append(f"{name} {md.version(name)}")
    except md.PackageNotFoundError:
        pass
print(f"python {platform.python_version()}; " + ", ".join(found))
print(f"jax.devices(): {jax.devices()}")
print(f"backend: {jax.default_backend()}; device kind: {jax.devices()[0].device_kind}")
if jax.default_backend() == "cpu":
    print("no GPU found: every figure below is the CPU's")
"""


@dataclasses.dataclass
class Row:
    """One line of the final table."""

    part: str
    status: str
    walls: list[float] = dataclasses.field(default_factory=list)


def _env(**extra: str) -> dict[str, str]:
    """The parts' environment: this checkout's flowdip first on the path, output unbuffered."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", **extra}


def _run(
    command: list[str], env: dict[str, str], deadline: float, label: str | None = None
) -> tuple[str, float]:
    """Runs `command` in its own process group, printing `label` (default: the command) and
    its output, indented, as it comes; stops it at `deadline`. Returns `("ok" | "failed (exit
    N)" | "stopped at the budget", wall seconds)`."""
    shown = ["python", *command[1:]] if command[0] == sys.executable else command
    print(f"  {label or '$ ' + ' '.join(shown)}", flush=True)
    start = time.monotonic()
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,  # its own group: stopping it stops whatever it started
    )

    def relay():
        for line in proc.stdout:
            print("    " + line, end="", flush=True)

    reader = threading.Thread(target=relay, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=max(deadline - time.monotonic(), 0.0))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        code = None
    reader.join(timeout=10)
    wall = time.monotonic() - start
    status = (
        "ok" if code == 0 else "stopped at the budget" if code is None else f"failed (exit {code})"
    )
    print(f"  -> {status}, {wall:.1f} s wall", flush=True)
    return status, wall


def _size(folder: pathlib.Path) -> str:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return f"{len(files)} files, {sum(p.stat().st_size for p in files) / 2**20:.1f} MiB"


def benchmark(name: str, deadline: float) -> Row:
    """One benchmark script, with its arguments from `BENCHMARKS`."""
    script = ROOT / "benchmarks" / f"{name}.py"
    status, wall = _run([sys.executable, str(script), *BENCHMARKS[name]], _env(), deadline)
    return Row(name, status, [wall])


def reproduce(name: str, tmp: pathlib.Path, deadline: float) -> Row:
    """`flowdip reproduce NAME --quick` twice, into two folders, with one fresh cache."""
    cache = tmp / f"{name}-cache"
    cache.mkdir()
    env = _env(FLOWDIP_COMPILATION_CACHE=str(cache))
    row = Row(name, "ok")
    for run in (1, 2):
        print(f"  run {run} ({'empty' if run == 1 else 'filled'} compilation cache {cache})")
        out = tmp / f"{name}-{run}"
        command = [sys.executable, "-m", "flowdip", "reproduce", name, "--quick", "--no-progress"]
        row.status, wall = _run([*command, "--out", str(out)], env, deadline)
        row.walls.append(wall)
        if row.status != "ok":
            return row
        if run == 1:
            print(f"  compilation cache after the first run: {_size(cache)}")
    first, second = (tmp / f"{name}-{run}" / "summary.txt" for run in (1, 2))
    first_s, second_s = row.walls
    print(f"  first run {first_s:.1f} s, second {second_s:.1f} s: first/second = ", end="")
    print(f"{first_s / second_s:.2f}")
    print(f"  {first.name} of the first run:")
    text = first.read_text() if first.is_file() else "(none written)\n"
    print("".join("    " + line for line in text.splitlines(keepends=True)), end="")
    if second.is_file():
        a, b = text.splitlines(), second.read_text().splitlines()
        differ = [y for x, y in zip(a, b) if x != y] + b[len(a) :] + a[len(b) :]
        print(f"  the second run's {second.name}: ", end="")
        print(f"differs in {len(differ)} line(s):" if differ else "the same")
        print("".join(f"    {line}\n" for line in differ[:5]), end="")
    return row


def header(deadline: float) -> None:
    """Where this runs: the versions, JAX's devices, and the GPUs nvidia-smi sees."""
    print(f"flowdip benchmarks, {time.strftime('%Y-%m-%d %H:%M:%S')}, checkout {ROOT}")
    rev = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    if rev.returncode == 0:
        print(f"git revision {rev.stdout.strip()}")
    if shutil.which("nvidia-smi"):
        query = ["--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
        smi = subprocess.run(["nvidia-smi", *query], capture_output=True, text=True)
        for line in smi.stdout.splitlines():
            print(f"nvidia-smi: {line}")
    _run([sys.executable, "-c", DEVICE_REPORT], _env(), deadline, "versions and devices:")


def table(rows: list[Row], skipped: list[str], total: float, budget: float) -> None:
    print(f"\n{'part':<24} {'status':<22} {'wall s':>8} {'2nd run s':>10} {'1st/2nd':>8}")
    for row in rows:
        walls = [f"{w:.1f}" for w in row.walls] + [""] * (2 - len(row.walls))
        done = len(row.walls) == 2 and row.status == "ok"
        ratio = f"{row.walls[0] / row.walls[1]:.2f}" if done else ""
        print(f"{row.part:<24} {row.status:<22} {walls[0]:>8} {walls[1]:>10} {ratio:>8}")
    for part in skipped:
        print(f"{part:<24} {'skipped (budget)':<22}")
    print(f"total {total:.1f} s of a budget of {budget:g} s")
    unfinished = [row.part for row in rows if row.status == "stopped at the budget"] + skipped
    if unfinished:
        print(f"not finished: {', '.join(unfinished)} (--only {','.join(unfinished)} runs them)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--budget",
        type=float,
        default=300.0,
        help="seconds for the whole run; then the part running is stopped and the rest skipped",
    )
    parser.add_argument(
        "--only", metavar="NAME,...", help=f"run only these parts, from {', '.join(PARTS)}"
    )
    args = parser.parse_args()
    if not args.budget > 0:
        parser.error(f"--budget must be a positive number of seconds; got {args.budget:g}")
    parts = list(PARTS)
    if args.only is not None:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in PARTS]
        if unknown or not names:
            parser.error(f"--only takes names from {', '.join(PARTS)}; got {args.only!r}")
        parts = [p for p in PARTS if p in names]

    start = time.monotonic()
    deadline = start + args.budget
    header(deadline)
    rows, skipped = [], []
    with tempfile.TemporaryDirectory(prefix="flowdip-bench-gpu-") as tmp:
        for part in parts:
            if time.monotonic() >= deadline:
                skipped.append(part)
                continue
            print(f"\n== {part}", flush=True)
            if part in REPRODUCTIONS:
                rows.append(reproduce(part, pathlib.Path(tmp), deadline))
            else:
                rows.append(benchmark(part, deadline))
    table(rows, skipped, time.monotonic() - start, args.budget)


if __name__ == "__main__":
    main()
