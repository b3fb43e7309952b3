"""Test configuration: float64, strict promotion, one CPU device (several-device runs are
tested in subprocesses).

The jaxtyping runtime checker is switched on for the whole package through pytest's
`--jaxtyping-packages=flowdip,beartype.beartype` (pyproject.toml), so every annotated function
and module constructor of flowdip is type- and shape-checked while the tests run.
"""

import os
import tempfile


os.environ.setdefault("MPLBACKEND", "Agg")
# As the command line does: the test workers share the cores, and OpenBLAS's threads (JAX's
# CPU eigensolvers) spin against them.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# The tests' programs are tiny, so XLA's compiler, not their run, is most of the suite's time:
# LLVM's optimisation passes off cut it by a quarter. The comparisons hold either way (both
# sides of each are compiled alike), and the subprocesses that tests start inherit the flags.
os.environ["XLA_FLAGS"] = " ".join(
    [
        os.environ.get("XLA_FLAGS", ""),
        "--xla_backend_optimization_level=0",
        "--xla_llvm_disable_expensive_passes=true",
    ]
).strip()

# One persistent compilation cache for the whole run, shared by the test workers and every
# process a test starts (workers of a pool or cluster, the command line): a program compiled
# once is not compiled again elsewhere. A fresh folder per run, so every run compiles.
_CACHE = os.path.join(
    tempfile.gettempdir(),
    f"flowdip-tests-{os.environ.get('PYTEST_XDIST_TESTRUNUID') or os.getpid()}",
)
os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.2"
os.environ["FLOWDIP_COMPILATION_CACHE"] = _CACHE

import jax  # noqa: E402


jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")
