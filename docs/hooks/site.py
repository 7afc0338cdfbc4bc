"""MkDocs hooks (``hooks:`` in mkdocs.yml): what makes the built site whole and usable offline.

1. MathJax from the Python environment. The ``docs`` extra installs the PyPI package
   ``django-static-mathjax``, which ships MathJax 3's browser build as plain files (it needs no Django);
   the parts the site uses (the TeX input with its extensions, the CommonHTML output with its fonts, the
   menu) are added to the site under ``assets/mathjax/``, so math renders with no network access and no
   copy of MathJax lives in git.
2. Repository files linked from a page. The pages link to files outside ``docs/`` the way GitHub shows
   them (``../../benchmarks/RESULTS.md`` from ``docs/tour/``); such a file is added to the site under
   ``repository/`` and the link is pointed at that copy, so the same Markdown works on GitHub and in the
   site and ``mkdocs build --strict`` still fails on a link to a file that does not exist.
"""

from __future__ import annotations

import posixpath
import re
from importlib import metadata
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

MATHJAX_DIST = "django-static-mathjax"
MATHJAX_DIR = "mathjax/static/mathjax/es5"  # inside that distribution
MATHJAX_PARTS = ("tex-chtml.js", "input/tex/extensions", "output/chtml", "ui")
MATHJAX_DEST = "assets/mathjax"
REPOSITORY = "repository"
LINK = re.compile(r"(\]\()(<?)([^)\s>]+)(>?)")


def mathjax_root() -> Path:
    try:
        root = Path(str(metadata.distribution(MATHJAX_DIST).locate_file(MATHJAX_DIR)))
    except metadata.PackageNotFoundError:
        root = None
    if root is None or not (root / "tex-chtml.js").is_file():
        raise PluginError(f"MathJax is not installed: the site serves it from the Python package {MATHJAX_DIST}; "
                          f"install the docs tools with pip install -e '.[docs]' (or make docs).")
    return root


def _repo(config) -> Path:
    return Path(config.config_file_path).resolve().parent


def _docs(config) -> Path:
    return Path(config.docs_dir).resolve()


def _outside_target(page_path: Path, link: str, docs: Path, repo: Path) -> Path | None:
    """The repository file a relative link from a page in docs/ points to, when it lies outside docs/."""
    if "://" in link or link.startswith(("#", "/", "mailto:")):
        return None
    path = link.split("#", 1)[0]
    if not path:
        return None
    target = (page_path.parent / path).resolve()
    if target.is_file() and target.is_relative_to(repo) and not target.is_relative_to(docs):
        return target
    return None


def on_files(files: Files, config) -> Files:
    root = mathjax_root()
    for part in MATHJAX_PARTS:
        source = root / part
        for path in sorted([source] if source.is_file() else source.rglob("*")):
            if path.is_file():
                uri = f"{MATHJAX_DEST}/{path.relative_to(root).as_posix()}"
                files.append(File.generated(config, uri, abs_src_path=str(path)))

    docs, repo = _docs(config), _repo(config)
    added: set[Path] = set()
    for page in list(files.documentation_pages()):
        source = Path(page.abs_src_path)
        if not source.is_relative_to(docs):
            continue
        for match in LINK.finditer(source.read_text(encoding="utf-8")):
            target = _outside_target(source, match.group(3), docs, repo)
            if target is not None and target not in added:
                added.add(target)
                uri = f"{REPOSITORY}/{target.relative_to(repo).as_posix()}"
                files.append(File.generated(config, uri, abs_src_path=str(target)))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    source = Path(page.file.abs_src_path)
    docs, repo = _docs(config), _repo(config)
    if not source.is_relative_to(docs):
        return markdown

    def point_at_copy(match: re.Match) -> str:
        target = _outside_target(source, match.group(3), docs, repo)
        if target is None:
            return match.group(0)
        anchor = match.group(3).partition("#")[2]
        copy = f"{REPOSITORY}/{target.relative_to(repo).as_posix()}"
        link = posixpath.relpath(copy, posixpath.dirname(page.file.src_uri)) + (f"#{anchor}" if anchor else "")
        return f"{match.group(1)}{match.group(2)}{link}{match.group(4)}"

    return LINK.sub(point_at_copy, markdown)
