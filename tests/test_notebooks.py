"""The notebooks in notebooks/ (jupytext percent-format .py files) run top to bottom and draw their figures.

Each is converted in memory with jupytext and executed with nbclient in a kernel of this interpreter (the
kernelspec ``python3``; jupyter_client starts it with ``sys.executable``), in a temporary working directory,
with one torch thread: ``execute`` of scripts/execute_notebooks.py, which ``make docs`` runs too (in full, into
a cache the site's notebook pages read). ``PPL_VAE_NOTEBOOK_FAST=1`` shrinks epochs, particles and repeats to
about ten seconds a notebook. A notebook fails on any error, and on a figure that was not drawn: every
``plt.show()`` in a code cell must have put an image/png output in that cell. The full runs (under 2 minutes
each on the CPU) are slow tests that run only with ``PPL_VAE_NOTEBOOK_FULL=1`` (``make notebooks-check``)."""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.py"))

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

# the same execution as `make docs` (scripts/execute_notebooks.py), here in a temporary working directory
_spec = importlib.util.spec_from_file_location("execute_notebooks", ROOT / "scripts" / "execute_notebooks.py")
execute_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(execute_notebooks)
execute = execute_notebooks.execute  # (path, working directory, fast, timeout) -> the executed notebook


def check_figures(nb, path: Path) -> int:
    drawn = 0
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        expected = cell.source.count("plt.show()")
        images = sum("image/png" in out.get("data", {}) for out in cell.get("outputs", []))
        assert images >= expected, f"{path.name}, cell {i}: {expected} figure(s) shown, {images} drawn"
        drawn += images
    assert drawn >= 1, f"{path.name} drew no figure"
    return drawn


def test_notebooks_found():
    assert NOTEBOOKS, "no notebooks in notebooks/"
    for path in NOTEBOOKS:
        assert "PPL_VAE_NOTEBOOK_FAST" in path.read_text(), f"{path.name} has no fast mode"


@pytest.mark.slow  # about 7 s each: make test runs them, make test-fast leaves them out
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_fast(path, tmp_path):
    nb = execute(path, tmp_path, fast=True, timeout=120)
    check_figures(nb, path)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("PPL_VAE_NOTEBOOK_FULL") != "1", reason="full runs: PPL_VAE_NOTEBOOK_FULL=1")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_full(path, tmp_path):
    nb = execute(path, tmp_path, fast=False, timeout=300)
    check_figures(nb, path)


def test_kernel_is_this_interpreter(tmp_path):
    """The kernel nbclient starts is this interpreter (the venv's), not whatever `python` is on PATH."""
    nb = jupytext.reads("# %%\nimport sys\nprint(sys.executable)\n", fmt="py:percent")
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=60,
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = "".join(out.get("text", "") for out in nb.cells[0].outputs).strip()
    assert Path(printed).resolve() == Path(sys.executable).resolve()
