"""The architecture as the README's Layout section states it: no import cycles, modules that import
alone, an inference engine that loads no model, a library that never imports the CLI."""

import pytest
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"ppl_vae": ROOT / "ppl_vae", "ppl_vae.models": ROOT / "models", "ppl_vae.guides": ROOT / "guides"}


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package, *parts))
            found[name.removesuffix(".__init__")] = path
    return {name: path for name, path in found.items() if not name.endswith("__main__")}


def top_level_imports(path: Path, name: str, known) -> set[str]:
    """The ppl_vae modules that ``path`` imports when it is imported (not inside functions);
    ``from package import submodule`` depends on the submodule, not on the package's __init__."""
    tree, out = ast.parse(path.read_text()), set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ppl_vae"):
            subs = {f"{node.module}.{a.name}" for a in node.names} & set(known)
            out |= subs or {node.module}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("ppl_vae")}
    return out


def test_the_module_graph_has_no_cycle():
    known = modules()
    graph = {name: {m for m in top_level_imports(path, name, known) if m in known and m != name} for name, path in known.items()}
    state: dict[str, str] = {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            assert state.get(nxt) != "open", "import cycle: " + " -> ".join(trail + [nxt])
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_nothing_in_the_library_imports_the_cli():
    for name, path in modules().items():
        if not name.startswith("ppl_vae.cli"):
            assert "ppl_vae.cli" not in path.read_text(), f"{name} imports the command line"


@pytest.mark.slow
def test_every_module_imports_alone_and_the_engine_loads_no_model():
    # One interpreter: before each module, every ppl_vae module is forgotten, so each is imported
    # on its own (torch and pyro stay loaded: they are not what could be out of order).
    probe = (
        "import importlib, sys\n"
        f"for name in {sorted(modules())!r}:\n"
        "    for m in [m for m in sys.modules if m.startswith('ppl_vae')]:\n"
        "        del sys.modules[m]\n"
        "    importlib.import_module(name)\n"
        "for m in [m for m in sys.modules if m.startswith('ppl_vae')]:\n"
        "    del sys.modules[m]\n"
        "import ppl_vae.inference.trainer, ppl_vae.inference.objectives\n"
        "print(sorted(m for m in sys.modules if m.startswith('ppl_vae.models.') and m != 'ppl_vae.models.mlp'))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"the inference engine imports models: {result.stdout}"
