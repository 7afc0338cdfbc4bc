# `make demo` and `make test` create .venv on first use, then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast docs notebooks notebooks-check bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Trains the default VAE on the bundled digits, estimates its test NLL and writes report.md; a second
# `make demo` starts a fresh run and keeps the previous one, with whatever was added to it, in
# runs/demo.previous (replacing an older one there).
demo: $(STAMP)
	@if [ -e runs/demo ]; then rm -rf runs/demo.previous && mv runs/demo runs/demo.previous && \
		echo "the previous runs/demo is now runs/demo.previous"; fi
	$(BIN)/ppl-vae train --out runs/demo
	$(BIN)/ppl-vae evaluate runs/demo --particles 1000
	$(BIN)/ppl-vae report runs/demo
	@echo "outputs in runs/demo: config.json, metrics.jsonl (one line per epoch), checkpoint.pt, eval.json, report.md, figures/"

# two worker processes (pytest-xdist) with one torch thread each keep both cores busy without oversubscribing them
test: $(STAMP)
	$(BIN)/python -m pytest -n 2

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m "not slow"

# The documentation site into site/ (MkDocs, Material, mkdocstrings; MathJax served from the site itself, so it
# works offline); `.venv/bin/mkdocs serve` serves it while you edit the pages. --strict: a broken link or
# a reference to an object that does not exist fails the build. First every notebook is executed in full, one
# torch thread, into .cache/notebooks/ (outside git; only those whose .py changed since: seconds when none did),
# for the notebooks' pages to show their outputs and figures; a notebook that fails stops here.
docs: $(STAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python scripts/execute_notebooks.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# The notebooks are jupytext percent-format .py files (notebooks/*.py, the ones to edit and review); this pairs
# each to a .ipynb beside it (git ignores those) to open in jupyter lab or VS Code, unexecuted; with jupytext
# installed there, saving a notebook updates its .py too (rerunning `make notebooks` syncs whichever is newer).
notebooks: $(STAMP)
	$(BIN)/jupytext --sync notebooks/[0-9]*.py

# Executes every notebook in full (not the test suite's fast mode), one torch thread, under 2 minutes each.
notebooks-check: $(STAMP)
	PPL_VAE_NOTEBOOK_FULL=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -p no:xdist tests/test_notebooks.py -k full --durations=0

bench: $(STAMP)
	$(BIN)/python scripts/bench_train.py

clean:
	rm -rf $(VENV) runs site .cache/notebooks
