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


def imports_anywhere(path: Path, known) -> set[str]:
    """Every ppl_vae module ``path`` imports, at its top or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ppl_vae"):
            out |= {node.module} | ({f"{node.module}.{a.name}" for a in node.names} & set(known))
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("ppl_vae")}
    return out


def test_each_layer_imports_only_the_layers_below_it():
    """The inference engine never reaches up into evaluation; parallel.py is the bottom of data parallelism;
    models and guides stand on pyro, torch and shared building blocks (models/mlp.py), not on each other,
    the evaluation, the registry or the command line."""
    above_models = ("ppl_vae.evaluation", "ppl_vae.registry", "ppl_vae.cli", "ppl_vae.run", "ppl_vae.inference.trainer")
    known = modules()
    for name, path in known.items():
        found = imports_anywhere(path, known)
        if name.startswith("ppl_vae.inference"):
            assert not {m for m in found if m.startswith("ppl_vae.evaluation")}, f"{name} imports evaluation"
        if name == "ppl_vae.parallel":
            assert found <= {"ppl_vae.errors"}, f"parallel.py imports {found}"
        if name.startswith(("ppl_vae.models", "ppl_vae.guides")):
            bad = {m for m in found if m.startswith(above_models)}
            if name.startswith("ppl_vae.models"):
                bad |= {m for m in found if m.startswith("ppl_vae.guides")}
            assert not bad, f"{name} imports {sorted(bad)}"


def test_no_rule_outside_an_objectives_module_compares_an_objective_name():
    """What an objective can do is declared by it (objectives.base.Needs), and the registry, the checks, data
    parallelism and the guides read the declarations: no `objective == "mmd"`, no `name in ("score-avg", ...)`."""
    from ppl_vae.inference.objectives import OBJECTIVES

    def names_in(node) -> set[str]:
        if isinstance(node, ast.Constant) and node.value in OBJECTIVES:
            return {node.value}
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return set().union(*map(names_in, node.elts)) if node.elts else set()
        return set()

    for name, path in modules().items():
        # the CLI's choices name them; the log p(x) estimators have an "elbo" of their own
        if name.startswith(("ppl_vae.inference.objectives", "ppl_vae.cli", "ppl_vae.evaluation.estimators")):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            # test_bound = "iwae" names the yardstick compare reports, the IWAE bound, not an objective
            if isinstance(node, ast.Compare) and getattr(node.left, "attr", None) != "test_bound":
                named = set().union(names_in(node.left), *map(names_in, node.comparators))
                assert not named, f"{name}, line {node.lineno}: a rule by objective name {sorted(named)}"
