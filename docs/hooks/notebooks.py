"""MkDocs hooks (``hooks:`` in mkdocs.yml): the notebooks as pages of the site, with their outputs and figures.

Each notebook ``notebooks/NAME.py`` (jupytext percent format, read with jupytext) becomes the page
``notebooks/NAME.html`` of the section whose index is ``docs/notebooks/index.md`` (the nav entry for that
page is expanded here into the section, one page per notebook, so a new notebook needs no edit of
mkdocs.yml): its markdown cells as Markdown (``$...$`` and ``$$...$$`` math rendered by the site's MathJax,
through pymdownx.arithmatex), its code cells as Python code blocks, each followed by the outputs the cell
printed (standard output and results; what went to standard error, warnings and progress bars, is left
out) and drew.

Nothing is executed during the build. The outputs come from the executed copy that ``make docs`` saved
before building (``scripts/execute_notebooks.py``: ``.cache/notebooks/NAME.ipynb``, or
``$PPL_VAE_NOTEBOOK_CACHE``), and only when that copy was executed from the ``.py`` as it is now (the SHA-256
in its metadata); its text outputs show as text blocks and its figures (``image/png``) are added to the site
as files beside the page (``notebooks/NAME/cell-04-1.png``). Without such a copy (a plain ``mkdocs build``,
the test suite's build, a notebook changed since) the page shows the code and says how to get the outputs.

A relative link in a markdown cell is read from ``notebooks/``, as GitHub and jupyter read it: to a page in
``docs/`` it becomes a link to that page, to another file of the repository a link to its copy under
``repository/`` (as docs/hooks/site.py does for the pages).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import posixpath
import re
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
SECTION = "notebooks"
SECTION_INDEX = f"{SECTION}/index.md"
LIST_MARKER = "<!-- notebooks: list -->"  # docs/notebooks/index.md: replaced by the list of notebooks
REPOSITORY = "repository"
LINK = re.compile(r"(\]\()(<?)([^)\s>]+)(>?)")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
LIST_ITEM = re.compile(r"^ {0,3}(?:[-*+]|\d+[.)]) ")
MIME_IMAGES = {"image/png": "png", "image/jpeg": "jpg"}
OUTPUT = "{.text .nb-output}"  # a fence for printed output: docs/stylesheets/notebooks.css sets it apart from code


def _load_script():
    """scripts/execute_notebooks.py, which says where the notebooks and their executed copies are."""
    spec = importlib.util.spec_from_file_location("ppl_vae_execute_notebooks", ROOT / "scripts" / "execute_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


executed = _load_script()
_pages: dict[str, dict] = {}  # NAME -> {"title", "state"} of the last build, for the section's index page


def on_config(config):
    """Expand the nav entry of notebooks/index.md into the section: the index, then one page per notebook."""
    pages = [SECTION_INDEX, *(f"{SECTION}/{path.stem}.md" for path in executed.notebooks())]

    def expand(items: list) -> bool:
        for i, item in enumerate(items):
            if item == SECTION_INDEX:
                items[i] = {"Notebooks": pages}
                return True
            if isinstance(item, dict) and len(item) == 1:
                (title, value), = item.items()
                if value == SECTION_INDEX or (isinstance(value, list) and value[:1] == [SECTION_INDEX]):
                    items[i] = {title: pages}  # (a list: expanded already, by an earlier build of mkdocs serve)
                    return True
                if isinstance(value, list) and expand(value):
                    return True
        return False

    if config.nav is not None and not expand(config.nav):
        raise PluginError(f"docs/hooks/notebooks.py: mkdocs.yml's nav has no entry {SECTION_INDEX}, "
                          f"which it expands into the notebooks' section")
    return config


def on_files(files: Files, config) -> Files:
    try:
        import jupytext
    except ImportError as error:
        raise PluginError("the notebooks' pages need jupytext: install the docs tools with pip install -e '.[docs]' "
                          "(or make docs)") from error
    _pages.clear()
    cache = executed.cache_dir()
    for path in executed.notebooks():
        info = None
        if executed.up_to_date(path, cache):
            nb = json.loads(executed.cached_path(path, cache).read_text(encoding="utf-8"))
            info = nb["metadata"][executed.METADATA_KEY]
        else:
            nb = json.loads(jupytext.writes(jupytext.read(path), fmt="ipynb"))
        stale = info is None and executed.cached_metadata(path, cache) is not None
        markdown, images, links = render(nb, path, info, stale)
        files.append(File.generated(config, f"{SECTION}/{path.stem}.md", content=markdown))
        for uri, data in images.items():
            files.append(File.generated(config, uri, content=data))
        for target in [path, *links]:
            uri = f"{REPOSITORY}/{target.relative_to(ROOT).as_posix()}"
            if files.get_file_from_path(uri) is None:
                files.append(File.generated(config, uri, abs_src_path=str(target)))
        _pages[path.stem] = {"title": _title(nb, path), "info": info, "stale": stale, "figures": len(images)}
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri != SECTION_INDEX or LIST_MARKER not in markdown:
        return markdown
    lines = []
    for name, entry in _pages.items():
        if entry["info"]:
            figures = f"{entry['figures']} figure{'s' if entry['figures'] != 1 else ''}"
            state = f"executed {entry['info']['executed']} in {entry['info']['seconds']:.0f} s, {figures}"
        else:
            state = "code only: " + ("changed since it was executed" if entry["stale"] else "not executed")
        lines.append(f"- [{entry['title']}]({name}.md) — {state}")
    return markdown.replace(LIST_MARKER, "\n".join(lines))


def on_serve(server, config, builder):
    """``mkdocs serve`` rebuilds when a notebook or an executed copy changes."""
    server.watch(str(executed.NOTEBOOK_DIR))
    cache = executed.cache_dir()
    if cache.is_dir():
        server.watch(str(cache))
    return server


# ---------------------------------------------------------------- one notebook as Markdown


def render(nb: dict, path: Path, info: dict | None, stale: bool) -> tuple[str, dict[str, bytes], list[Path]]:
    """The page's Markdown, its figures ({site path: bytes}) and the repository files its links point at."""
    stem, blocks, images, links = path.stem, [], {}, []
    source_link = f"../{REPOSITORY}/{path.relative_to(ROOT).as_posix()}"
    for number, cell in enumerate(nb.get("cells", [])):
        source = _text(cell.get("source", ""))
        if cell.get("cell_type") == "markdown":
            blocks.append(_markdown(source, links))
        elif cell.get("cell_type") == "code":
            if source.strip():
                blocks.append(_fence(source, "python"))
            count = 0
            for output in _merged_streams(cell.get("outputs", [])):
                block = _output(output, stem, number, count + 1, images)
                if block is not None:
                    count += block[1]
                    blocks.append(block[0])
        if number == 0:  # after the title cell: where the page comes from and whether it shows outputs
            blocks.append(_provenance(path, source_link, info, stale))
    if not nb.get("cells"):
        blocks.append(_provenance(path, source_link, info, stale))
    return "\n\n".join(blocks) + "\n", images, links


def _provenance(path: Path, source_link: str, info: dict | None, stale: bool) -> str:
    name = path.relative_to(ROOT).as_posix()
    if info:
        return (f'!!! info "Executed notebook"\n    This page is [`{name}`]({source_link}), executed top to bottom by '
                f"`make docs` on {info['executed']} ({info['seconds']:.0f} s on the CPU); the outputs and figures "
                f"below are that run's. To run it yourself, `make notebooks` pairs it to a `.ipynb` for jupyter.")
    why = ("its executed copy is of an older version of the notebook" if stale else
           "this build did not execute the notebooks")
    return (f'!!! note "Code only: no outputs or figures"\n    This page is [`{name}`]({source_link}) without its '
            f"outputs: {why}. `make docs` executes every notebook (once, and again when it changes) and builds "
            f"the site with their figures; `make notebooks` pairs it to a `.ipynb` for jupyter.")


def _title(nb: dict, path: Path) -> str:
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            heading = re.search(r"^#\s+(.+?)\s*#*\s*$", _text(cell.get("source", "")), re.M)
            if heading:
                return heading.group(1)
    return path.stem


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _fence(text: str, language: str = OUTPUT) -> str:
    ticks = max([3, *(len(run) + 1 for run in re.findall(r"`{3,}", text))])
    return f"{'`' * ticks}{language}\n{text.rstrip()}\n{'`' * ticks}"


def _markdown(source: str, links: list[Path]) -> str:
    """A markdown cell as Python-Markdown reads it the way jupyter does: a list or a ``$$`` display right after
    a line of text starts a block of its own (Python-Markdown wants a blank line before both), and relative
    links are read from notebooks/."""
    out: list[str] = []
    paragraph_has_list, fenced, display = False, False, False
    for line in source.split("\n"):
        if display:  # inside a $$ display over several lines: as written ("  + x" there is no list item)
            out.append(line)
            if line.rstrip().endswith("$$"):
                display = False
                out.append("")
            continue
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        if fenced or not line.strip():
            paragraph_has_list = paragraph_has_list and bool(line.strip())
            out.append(line)
            continue
        is_item = bool(LIST_ITEM.match(line))
        starts_display = line.lstrip().startswith("$$")
        if out and out[-1].strip() and ((is_item and not paragraph_has_list) or starts_display):
            out.append("")
        out.append(line)
        paragraph_has_list = paragraph_has_list or is_item
        if starts_display:
            if line.rstrip().endswith("$$") and len(line.strip()) > 2:
                out.append("")  # a one-line display: what follows is a new paragraph
            else:
                display = True
    return LINK.sub(lambda match: _link(match, links), "\n".join(out)).strip("\n")


def _link(match: re.Match, links: list[Path]) -> str:
    """A relative link of a markdown cell, read from notebooks/, as the site's page notebooks/NAME.md sees it."""
    link = match.group(3)
    if "://" in link or link.startswith(("#", "/", "mailto:")):
        return match.group(0)
    path, _, anchor = link.partition("#")
    target = (executed.NOTEBOOK_DIR / path).resolve() if path else None
    if target is None or not target.is_file() or not target.is_relative_to(ROOT):
        return match.group(0)  # not a file: left as written (mkdocs --strict reports it when it is a broken link)
    docs = ROOT / "docs"
    if target.is_relative_to(docs):
        uri = target.relative_to(docs).as_posix()
    else:
        uri = f"{REPOSITORY}/{target.relative_to(ROOT).as_posix()}"
        links.append(target)
    new = posixpath.relpath(uri, SECTION) + (f"#{anchor}" if anchor else "")
    return f"{match.group(1)}{match.group(2)}{new}{match.group(4)}"


def _merged_streams(outputs: list[dict]) -> list[dict]:
    """Consecutive stream outputs of the same stream as one (a cell's prints arrive in pieces)."""
    merged: list[dict] = []
    for output in outputs:
        if (output.get("output_type") == "stream" and merged and merged[-1].get("output_type") == "stream"
                and merged[-1].get("name") == output.get("name")):
            merged[-1] = dict(merged[-1], text=_text(merged[-1]["text"]) + _text(output.get("text", "")))
        else:
            merged.append(output)
    return merged


def _plain(text: str) -> str:
    """Terminal text as it last looked: no colour codes, and a line rewritten with \\r (a progress bar) as its last state."""
    lines = ANSI.sub("", text).split("\n")
    return "\n".join(line.rstrip("\r").rsplit("\r", 1)[-1] for line in lines)


def _output(output: dict, stem: str, cell: int, figure: int, images: dict[str, bytes]) -> tuple[str, int] | None:
    """One output as Markdown, and how many figures it added (an image/png becomes a file beside the page)."""
    kind = output.get("output_type")
    if kind == "stream":
        if output.get("name") == "stderr":  # warnings and progress bars (a TqdmWarning in every notebook): left out
            return None
        text = _plain(_text(output.get("text", "")))
        return (_fence(text), 0) if text.strip() else None
    if kind == "error":
        text = _plain("\n".join(output.get("traceback", [])) or f"{output.get('ename')}: {output.get('evalue')}")
        return _fence(text), 0
    data = output.get("data", {})
    for mime, suffix in MIME_IMAGES.items():
        if mime in data:
            uri = f"{SECTION}/{stem}/cell-{cell:02d}-{figure}.{suffix}"
            images[uri] = base64.b64decode(_text(data[mime]))
            return f"![Figure {figure} of cell {cell}]({posixpath.relpath(uri, SECTION)})", 1
    if "text/markdown" in data:
        return _markdown(_text(data["text/markdown"]), []), 0
    if "text/plain" in data:
        text = _plain(_text(data["text/plain"]))
        return (_fence(text), 0) if text.strip() else None
    if "text/html" in data:
        return f'<div class="notebook-output" markdown="0">\n{_text(data["text/html"])}\n</div>', 0
    return None
