"""Run a notebook's code from the command line: what makes a teaching script a thin wrapper.

A lecture demonstration lives in one place, its notebook in ``notebooks/`` (a jupytext percent-format
``.py`` file). The script of the same demonstration reads that notebook with jupytext and executes its
code cells in order, in one namespace, with

- the notebook's flag variables (top-level assignments such as ``EPOCHS = 5 if FAST else 150``)
  replaced by the values the command line gave — ``FAST`` is always False, the full run;
- each ``plt.show()`` writing the current figure to the next of the script's file names under ``--out``
  (matplotlib's Agg backend, 100 dpi) instead of displaying it;

and, once every cell has run, prints ``wrote PATH: what it shows`` for each figure. ``sections`` limits
the run to the first code cell (imports, flags, data) and the cells under the named ``## `` headings.
A flag the notebook does not assign, or a figure count that differs from the script's, is an error: the
notebook and its script cannot drift apart silently.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Callable

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def code_cells(notebook: str, sections: tuple[str, ...] | None = None) -> list[str]:
    """The sources of the notebook's code cells, in order (with ``sections``: the first one and those under
    a ``## `` heading that starts with one of them)."""
    try:
        import jupytext
    except ImportError:  # pragma: no cover - the project's dev extras have it
        raise SystemExit("this script runs notebooks/" + notebook + " and needs jupytext: "
                         "pip install -e '.[notebooks]'") from None
    cells, heading, first = [], None, True
    for cell in jupytext.read(NOTEBOOKS / notebook).cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("## "):
                    heading = line[3:].strip()
        elif cell.cell_type == "code":
            if first or sections is None or (heading and heading.startswith(sections)):
                cells.append(cell.source)
            first = False
    return cells


class _Flags(ast.NodeTransformer):
    """Replaces the value of top-level ``NAME = ...`` assignments of the overridden names."""

    def __init__(self, values: dict):
        self.values, self.seen = values, set()

    def visit_Module(self, node):
        for stmt in node.body:
            if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
                    and stmt.targets[0].id in self.values):
                name = stmt.targets[0].id
                stmt.value = ast.parse(repr(self.values[name]), mode="eval").body
                self.seen.add(name)
        return node


def run(notebook: str, flags: dict, out: str, figures: list[tuple[str, str | Callable[[dict], str]]],
        sections: tuple[str, ...] | None = None) -> dict:
    """Execute ``notebooks/NOTEBOOK`` with ``flags`` (name → value, each a literal) and write its figures to
    ``out``/NAME.png, one per ``plt.show()`` in the order of ``figures`` ([(NAME, description)], a description
    being a string or a function of the notebook's namespace); returns that namespace."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out, exist_ok=True)
    transformer = _Flags({"FAST": False, **flags})
    written: list[str] = []

    def show(*args, **kwargs):
        if len(written) == len(figures):
            raise RuntimeError(f"notebooks/{notebook} shows more figures than the {len(figures)} this script writes")
        path = os.path.join(out, f"{figures[len(written)][0]}.png")
        fig = plt.gcf()
        fig.savefig(path, dpi=100, format="png")
        plt.close(fig)
        written.append(path)

    namespace: dict = {"__name__": "__notebook__"}
    original, plt.show = plt.show, show
    try:
        for i, source in enumerate(code_cells(notebook, sections)):
            tree = transformer.visit(ast.parse(source))
            code = compile(ast.fix_missing_locations(tree), f"notebooks/{notebook}, code cell {i + 1}", "exec")
            exec(code, namespace)
    finally:
        plt.show = original
    missing = set(transformer.values) - transformer.seen
    if missing:
        raise RuntimeError(f"notebooks/{notebook} assigns no flag {', '.join(sorted(missing))}")
    if len(written) != len(figures):
        raise RuntimeError(f"notebooks/{notebook} showed {len(written)} figures, this script writes {len(figures)}")
    for path, (_, description) in zip(written, figures):
        print(f"wrote {path}: {description(namespace) if callable(description) else description}")
    return namespace
