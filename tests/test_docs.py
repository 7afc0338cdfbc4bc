"""The documentation site: `mkdocs build --strict` passes (no broken link, no reference to an object that
does not exist) without importing torch, the API reference documents every public name and every
library module, the math is served by the site itself, and every notebook has a page, with the outputs
and figures of its executed copy when `make docs` made one (here a fake one: no notebook is executed).
Also scripts/check_readme.py over the README and the site's pages, in the order of mkdocs.yml's nav."""

import ast
import base64
import importlib.util
import json
import os
import re
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"ppl_vae": ROOT / "ppl_vae", "ppl_vae.models": ROOT / "models", "ppl_vae.guides": ROOT / "guides"}
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.py"))


def load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


executed = load("execute_notebooks_docs", ROOT / "scripts" / "execute_notebooks.py")


def png(width: int = 3, height: int = 2) -> bytes:
    """A small valid PNG (grey), written without an imaging library."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    rows = b"".join(b"\x00" + bytes([128] * width) for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


FIGURE = png()
PRINTED = "printed by the executed copy"


def fake_executed_copy(path: Path, cache: Path, source_sha256: str) -> None:
    """What scripts/execute_notebooks.py would have saved for ``path``: its first code cell printed a line and
    drew a figure (``source_sha256`` says which version of the .py it was executed from)."""
    import jupytext

    nb = json.loads(jupytext.writes(jupytext.read(path), fmt="ipynb"))
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code")
    cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": [PRINTED + "\n"]},
                       {"output_type": "display_data", "metadata": {},
                        "data": {"image/png": base64.b64encode(FIGURE).decode(), "text/plain": ["<Figure>"]}}]
    nb["metadata"][executed.METADATA_KEY] = {"source_sha256": source_sha256, "executed": "2026-01-01 00:00 UTC",
                                             "seconds": 42.0, "mode": "full"}
    cache.mkdir(parents=True, exist_ok=True)
    executed.cached_path(path, cache).write_text(json.dumps(nb), encoding="utf-8")


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
    """The site built in strict mode, with a torch that cannot be imported on the path, and a cache of executed
    notebooks that holds a fake copy of the first notebook, up to date, and one of the second, out of date."""
    tmp = tmp_path_factory.mktemp("docs")
    (tmp / "stub").mkdir()
    (tmp / "stub" / "torch.py").write_text('raise ImportError("the documentation build imported torch")\n')
    fake_executed_copy(NOTEBOOKS[0], tmp / "cache", executed.source_hash(NOTEBOOKS[0]))
    if len(NOTEBOOKS) > 1:
        fake_executed_copy(NOTEBOOKS[1], tmp / "cache", "0" * 64)
    env = dict(os.environ, PYTHONPATH=str(tmp / "stub"), NO_MKDOCS_2_WARNING="1",
               **{executed.CACHE_ENV: str(tmp / "cache")})
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


@pytest.mark.slow
def test_every_notebook_has_a_page_in_the_notebooks_section(site):
    assert NOTEBOOKS
    index = (site / "notebooks" / "index.html").read_text(encoding="utf-8")
    for path in NOTEBOOKS:
        page = site / "notebooks" / f"{path.stem}.html"
        assert page.is_file(), f"{path.name} has no page in the site"
        assert f'href="{path.stem}.html"' in index, f"notebooks/index.html does not list {path.name}"
        text = page.read_text(encoding="utf-8")
        assert '<span class="kn">import</span>' in text, f"{page.name}: no Python code block"
        if "$" in path.read_text(encoding="utf-8"):
            assert 'class="arithmatex"' in text, f"{page.name}: its math was not marked for MathJax"
        prose = re.sub(r"<(pre|code)\b.*?</\1>", "", text[text.find("<article"):text.find("</article>")], flags=re.S)
        left = re.findall(r".{0,40}\$.{0,40}", prose)
        assert not left, f"{page.name}: math that MathJax will not see (its $ left in the text): {left[:3]}"
        assert "../repository/notebooks/" + path.name in text  # the page links to its .py
    assert (site / "repository" / "notebooks" / NOTEBOOKS[0].name).read_bytes() == NOTEBOOKS[0].read_bytes()


@pytest.mark.slow
def test_notebook_page_shows_the_executed_copys_outputs_and_figures(site):
    first = (site / "notebooks" / f"{NOTEBOOKS[0].stem}.html").read_text(encoding="utf-8")
    images = re.findall(r'<img[^>]+src="([^"]+)"', first)
    assert len(images) == 1 and images[0].startswith(f"{NOTEBOOKS[0].stem}/") and images[0].endswith(".png"), images
    assert (site / "notebooks" / images[0]).read_bytes() == FIGURE  # the figure is a file of the site, not inlined
    assert PRINTED in first and "Executed notebook" in first and "Code only" not in first
    for path in NOTEBOOKS[1:]:
        text = (site / "notebooks" / f"{path.stem}.html").read_text(encoding="utf-8")
        assert "<img" not in text and PRINTED not in text and "Code only" in text and "make docs" in text
    if len(NOTEBOOKS) > 1:  # its executed copy is of an older version of the .py: not shown
        assert "older version" in (site / "notebooks" / f"{NOTEBOOKS[1].stem}.html").read_text(encoding="utf-8")


def test_an_executed_copy_is_up_to_date_only_for_the_source_it_was_executed_from(tmp_path):
    notebook = tmp_path / "01_example.py"
    notebook.write_text("# %% [markdown]\n# # An example\n\n# %%\nprint(1)\n")
    cache = tmp_path / "cache"
    assert executed.cached_metadata(notebook, cache) is None and not executed.up_to_date(notebook, cache)
    fake_executed_copy(notebook, cache, executed.source_hash(notebook))
    assert executed.up_to_date(notebook, cache)
    notebook.write_text(notebook.read_text() + "print(2)\n")
    assert not executed.up_to_date(notebook, cache) and executed.cached_metadata(notebook, cache)["seconds"] == 42.0


def test_notebook_cells_become_markdown_the_site_renders():
    hook = load("notebooks_hook_docs", ROOT / "docs" / "hooks" / "notebooks.py")
    nb = {"cells": [
        {"cell_type": "markdown", "source": "# Title"},
        {"cell_type": "markdown", "source": ["The bound\n", "$$\\mathcal L_K \\le \\log p(x)$$\n", "holds. Try:\n",
                                             "- more draws, see [the tour](../docs/tour/07-comparing-inference.md#a)\n",
                                             "- [the check](../scripts/check_site.py)"]},
        {"cell_type": "markdown", "source": "splits into\n$$a = b\n  + c$$\nso"},
        {"cell_type": "code", "source": "for i in range(3):\n    print(i)", "outputs": [
            {"output_type": "stream", "name": "stdout", "text": "0\n1\n"},
            {"output_type": "stream", "name": "stdout", "text": "\x1b[31m2\x1b[0m\n"},
            {"output_type": "stream", "name": "stderr", "text": "UserWarning: left out\n"},
            {"output_type": "stream", "name": "stdout", "text": "10%\r50%\r100%\n"},
            {"output_type": "display_data", "data": {"image/png": base64.b64encode(FIGURE).decode(), "text/plain": "<Figure>"}},
            {"output_type": "execute_result", "data": {"text/plain": "'done'"}}]},
    ]}
    markdown, images, links = hook.render(nb, ROOT / "notebooks" / "01_x.py", None, stale=False)
    assert "The bound\n\n$$\\mathcal L_K \\le \\log p(x)$$\n\nholds. Try:\n\n- more draws" in markdown
    assert "(../tour/07-comparing-inference.md#a)" in markdown and "(../repository/scripts/check_site.py)" in markdown
    assert links == [ROOT / "scripts" / "check_site.py"]
    assert "splits into\n\n$$a = b\n  + c$$\n\nso" in markdown  # "  + c" inside the display is no list item
    assert "```python\nfor i in range(3):\n    print(i)\n```" in markdown
    out = "```{.text .nb-output}\n"
    assert f"{out}0\n1\n2\n```" in markdown and f"{out}100%\n```" in markdown and f"{out}'done'\n```" in markdown
    assert "left out" not in markdown
    assert images == {"notebooks/01_x/cell-03-1.png": FIGURE} and "](01_x/cell-03-1.png)" in markdown
    assert "<Figure>" not in markdown and "Code only" in markdown
    assert markdown.index("# Title") < markdown.index("Code only") < markdown.index("The bound")


# ---------------------------------------------------------------- check_readme over README and pages

SCRIPT = ROOT / "scripts" / "check_readme.py"
cr = load("check_readme_docs", SCRIPT)
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
