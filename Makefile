SHELL := /bin/bash
# Everything the project needs is installed from here: `make demo` and `make test` work on a
# fresh machine with nothing but python3 (>= 3.11) on the PATH.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
OUT    ?= results/demo

.PHONY: install demo test lint pytest docs bench bench-gpu clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The main job: gradient flow against gradient descent on one compressed-sensing instance.
demo: install
	$(BIN)/flowdip demo --out $(OUT)

# The whole test command: lint, the test suite (jaxtyping checker on), the docs in strict mode.
test: lint pytest docs

lint: install
	$(BIN)/ruff check flowdip tests benchmarks examples
	$(BIN)/ruff format --check flowdip tests benchmarks examples

# One worker per core; a test file stays on one worker so its module fixtures compile once.
pytest: install
	$(BIN)/python -m pytest -q -n auto --dist loadfile

docs: install
	# Not --quiet: in mkdocs 1.6 it also hides the warnings that --strict turns into errors.
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site 2>&1 | grep -v '^INFO' ; exit $${PIPESTATUS[0]}

bench: install
	$(BIN)/python benchmarks/bench_core.py

# Every benchmark's figures and the P1 quick reproductions (cold and warm compilation cache),
# within a budget of 300 s (`python benchmarks/bench_gpu.py --help`: another budget, a subset).
bench-gpu: install
	$(BIN)/python benchmarks/bench_gpu.py

clean:
	rm -rf $(VENV) site results .pytest_cache
