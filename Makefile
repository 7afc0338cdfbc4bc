# `make demo` and `make test` create .venv on first use, then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast docs bench clean

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
# a reference to an object that does not exist fails the build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

bench: $(STAMP)
	$(BIN)/python scripts/bench_train.py

clean:
	rm -rf $(VENV) runs site
