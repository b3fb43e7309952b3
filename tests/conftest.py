"""Test configuration: float64, strict promotion, one CPU device (several-device runs are
tested in subprocesses).

The jaxtyping runtime checker is switched on for the whole package through pytest's
`--jaxtyping-packages=flowdip,beartype.beartype` (pyproject.toml), so every annotated function
and module constructor of flowdip is type- and shape-checked while the tests run.
"""

import os
import shutil
import tempfile


os.environ.setdefault("MPLBACKEND", "Agg")
# As the command line does: the test workers share the cores, and OpenBLAS's threads (JAX's
# CPU eigensolvers) spin against them.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# The tests' programs are tiny, so XLA's compiler, not their run, is most of the suite's time:
# LLVM's optimisation passes off cut it by a quarter. The comparisons hold either way (both
# sides of each are compiled alike), and the subprocesses that tests start inherit the flags.
_FLAGS = ("--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true")
os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", "")]
    + [f for f in _FLAGS if f not in os.environ.get("XLA_FLAGS", "")]
).strip()

# One persistent compilation cache for the whole run, shared by the test workers and every
# process a test starts (workers of a pool or cluster, the command line): a program compiled
# once is not compiled again elsewhere. A fresh folder per run, so every run compiles; made by
# the process that starts the run (pytest-xdist's workers inherit it) and removed by it.
_OWN_CACHE = "FLOWDIP_TEST_CACHE" not in os.environ
if _OWN_CACHE:
    os.environ["FLOWDIP_TEST_CACHE"] = tempfile.mkdtemp(prefix="flowdip-tests-")
_CACHE = os.environ["FLOWDIP_TEST_CACHE"]
os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.2"
os.environ["FLOWDIP_COMPILATION_CACHE"] = _CACHE


def pytest_unconfigure(config):
    if _OWN_CACHE:
        shutil.rmtree(_CACHE, ignore_errors=True)


import jax  # noqa: E402


jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")
