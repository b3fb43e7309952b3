"""Test configuration: float64, strict promotion, one CPU device (several-device runs are
tested in subprocesses).

The jaxtyping runtime checker is switched on for the whole package through pytest's
`--jaxtyping-packages=flowdip,beartype.beartype` (pyproject.toml), so every annotated function
and module constructor of flowdip is type- and shape-checked while the tests run.
"""

import os


os.environ.setdefault("MPLBACKEND", "Agg")
# As the command line does: the test workers share the cores, and OpenBLAS's threads (JAX's
# CPU eigensolvers) spin against them.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax  # noqa: E402


jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")
