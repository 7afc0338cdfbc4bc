"""The documentation site: `mkdocs build --strict` passes (no broken link, no reference to an object that
does not exist) without importing torch, the API reference documents every public name and every
library module, and the math is served by the site itself. Also scripts/check_readme.py over the
README and the site's pages, in the order of mkdocs.yml's nav."""

import ast
import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"ppl_vae": ROOT / "ppl_vae", "ppl_vae.models": ROOT / "models", "ppl_vae.guides": ROOT / "guides"}


def exported_names() -> list[str]:
    """ppl_vae.__all__, read from the source (importing ppl_vae would import torch)."""
    tree = ast.parse((ROOT / "ppl_vae" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise AssertionError("ppl_vae/__init__.py defines no __all__")


def library_modules() -> set[str]:
    """Every module of the library, as installed; the command line (ppl_vae.cli) is documented by --help."""
    found = set()
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            name = ".".join((package, *path.relative_to(folder).with_suffix("").parts)).removesuffix(".__init__")
            if not name.startswith("ppl_vae.cli") and not name.endswith("__main__"):
                found.add(name)
    return found


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site built in strict mode, with a torch that cannot be imported on the path."""
    tmp = tmp_path_factory.mktemp("docs")
    (tmp / "stub").mkdir()
    (tmp / "stub" / "torch.py").write_text('raise ImportError("the documentation build imported torch")\n')
    env = dict(os.environ, PYTHONPATH=str(tmp / "stub"), NO_MKDOCS_2_WARNING="1")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp / "site")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return tmp / "site"


def api_html(site: Path) -> str:
    return "\n".join(page.read_text(encoding="utf-8") for page in sorted((site / "api").glob("*.html")))


@pytest.mark.slow
def test_api_reference_documents_every_exported_name(site):
    anchors = set(re.findall(r'id="(ppl_vae[\w.]*)"', api_html(site)))
    missing = [name for name in exported_names() if f"ppl_vae.{name}" not in anchors]
    assert not missing, f"ppl_vae.__all__ names without an entry in docs/api/: {missing}"
    assert {"ppl_vae.Dataset.from_tensors", "ppl_vae.fit"} <= anchors


@pytest.mark.slow
def test_api_reference_documents_every_library_module(site):
    anchors = set(re.findall(r'id="(ppl_vae[\w.]*)"', api_html(site)))
    missing = sorted(library_modules() - anchors)
    assert not missing, f"modules missing from the API reference (add a ::: directive to a page of docs/api/): {missing}"
    # models/ and guides/ are found as the packages they are installed as, with their classes
    assert {"ppl_vae.models.vae.VAE", "ppl_vae.guides.gaussian.DiagonalGaussian",
            "ppl_vae.inference.objectives.iwae.IWAELoss"} <= anchors


@pytest.mark.slow
def test_math_and_figures_are_served_by_the_site_itself(site):
    assert (site / "assets" / "mathjax" / "tex-chtml.js").is_file()
    assert list((site / "assets" / "mathjax" / "output" / "chtml" / "fonts").rglob("*.woff"))
    objectives = (site / "api" / "objectives.html").read_text(encoding="utf-8")
    assert objectives.count('class="arithmatex"') > 10 and "\\mathcal{L}_K" in objectives
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        scripts = re.findall(r'<script[^>]+src="([^"]+)"', text)
        assert not [s for s in scripts if "://" in s or s.startswith("//")], f"{page}: a script from the network"
        for image in re.findall(r'<img[^>]+src="([^"]+)"', text):
            assert (page.parent / image).resolve().is_file(), f"{page}: image {image} is not in the site"
    # the tour's figure outside docs/ is copied into the site, and the tour keeps its check-readme comments
    tour = (site / "tour" / "07-comparing-inference.html").read_text(encoding="utf-8")
    assert "../repository/benchmarks/compare_digits/comparison_epochs.png" in tour
    assert "<!-- check-readme: file runs/compare/comparison.md -->" in tour


# ---------------------------------------------------------------- check_readme over README and pages

SCRIPT = ROOT / "scripts" / "check_readme.py"
_spec = importlib.util.spec_from_file_location("check_readme_docs", SCRIPT)
cr = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = cr
_spec.loader.exec_module(cr)
F = "```"


def md(text):
    return textwrap.dedent(text).lstrip("\n").replace("FENCE", F)


MKDOCS = md("""
    site_name: t
    docs_dir: pages
    theme:
      name: material
    nav:
      - Start: index.md
      - Tour:
          - tour/one.md
          - "Two: the second": tour/two.md   # a comment
      - Site: https://example.org/page.md
    plugins:
      - search
    """)


def make_repo(root):
    (root / "scripts").mkdir(parents=True)
    (root / "scripts" / "check_readme.py").write_text(SCRIPT.read_text())
    (root / "mkdocs.yml").write_text(MKDOCS)
    (root / "README.md").write_text(md("""
        FENCE
        $ mkdir -p runs && echo "demo 1" | tee -a runs/count
        demo 1
        FENCE
        """))
    (root / "pages" / "tour").mkdir(parents=True)
    (root / "pages" / "index.md").write_text("# Start\n\nNo commands here.\n")
    (root / "pages" / "tour" / "two.md").write_text(md("""
        FENCE
        $ wc -l < runs/count
        1
        $ echo "two 3"
        two 2
        FENCE
        """))
    (root / "pages" / "tour" / "one.md").write_text(md("""
        The README's block again:

        FENCE
        $ mkdir -p runs && echo "demo 1" | tee -a runs/count
        demo 1
        FENCE

        <!-- check-readme: file runs/count -->
        demo 2
        <!-- check-readme: end -->
        """))
    return root


def run_script(root, *args):
    return subprocess.run([sys.executable, str(root / "scripts" / "check_readme.py"), *args],
                          cwd=root, capture_output=True, text=True, timeout=60)


def test_nav_pages_are_read_in_order_without_yaml(tmp_path):
    repo = make_repo(tmp_path / "repo")
    assert cr.nav_pages(repo) == [repo / "pages" / "index.md", repo / "pages" / "tour" / "one.md",
                                  repo / "pages" / "tour" / "two.md"]
    assert cr.nav_pages(tmp_path) == []  # no mkdocs.yml: the README alone


def test_check_readme_lists_the_readme_then_the_pages(tmp_path):
    repo = make_repo(tmp_path / "repo")
    done = run_script(repo, "--list")
    assert done.returncode == 0, done.stderr
    assert [line.split(": ", 1)[0] for line in done.stdout.splitlines()] == [
        "README.md:2", "pages/tour/one.md:4", "pages/tour/one.md:8", "pages/tour/two.md:2", "pages/tour/two.md:4"]
    assert run_script(repo, "--list", "--no-docs").stdout.splitlines() == [done.stdout.splitlines()[0]]


def test_check_readme_runs_a_repeated_block_once_and_writes_each_file(tmp_path):
    repo = make_repo(tmp_path / "repo")
    readme = (repo / "README.md").read_text()
    done = run_script(repo, "--write")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "quoted before, at README.md:2; not rerun" in done.stderr
    assert "pages/tour/one.md:9: number moved: expected 2 got 1 (tolerance 0): demo 1" in done.stdout
    assert "pages/tour/two.md:5: number moved: expected 2 got 3" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == (
        "check_readme: 3 commands run, 0 skipped, 1 repeated (run once), 1 file regions; 2 numbers moved, 0 text changes")
    assert (repo / "runs" / "count").read_text() == "demo 1\n"  # the demo ran once
    assert "two 3" in (repo / "pages" / "tour" / "two.md").read_text()
    assert "demo 2" not in (repo / "pages" / "tour" / "one.md").read_text()
    assert (repo / "README.md").read_text() == readme  # its output had not moved
    again = run_script(repo, "--clean")
    assert again.returncode == 0, again.stdout + again.stderr
