"""A Griffe extension for the API reference: reads the project the way it is installed, statically.

Two things the docs build needs that Griffe does not do by itself, without importing anything (so the
build never imports torch):

1. ``pyproject.toml`` installs the top-level folders ``models/`` and ``guides/`` as ``ppl_vae.models``
   and ``ppl_vae.guides`` (``[tool.setuptools.package-dir]``). Griffe finds a package's submodules in
   its own folder only, so once ``ppl_vae`` is loaded this extension visits each mapped folder and
   attaches it under its installed name.
2. The docstrings cross-reference with Sphinx roles (``:func:`fit```, ``:class:`~ppl_vae.data.Dataset```),
   which Markdown would show as text. Each role becomes an optional autorefs link: a link to the
   object's entry where the reference documents it, its name in code where it does not (so a reference
   to something outside the reference, such as ``pyro.infer.ELBO``, is no broken link). A docstring's
   math stays math: ``E[z][0]`` or ``[Σ a] [Σ b]`` is not read as a Markdown link, a reST simple table
   stays aligned, and ``text::`` before a literal block shows as ``text:``.
"""

from __future__ import annotations

import re
from pathlib import Path

import griffe

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "ppl_vae"
ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|data|attr|exc|obj|const):`(~?)([^`<>]+?)(?:\s*<([^`<>]+)>)?`")
# "]" right before "[" or "(": in a docstring's math, E[z][0] or [Σ_n a] [Σ_n b], never a Markdown link.
BRACKETS = re.compile(r"\](?=\s?[\[(])")
CODE_SPAN = re.compile(r"(`+).+?\1")
TABLE_BORDER = re.compile(r"^ *=+( +=+)+ *$")
LITERAL_MARKER = re.compile(r"(\S)::$", re.M)


def package_dirs(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, Path]:
    """``{"ppl_vae.models": ROOT/models, ...}``: the subpackages that live outside the package's folder."""
    text = pyproject.read_text(encoding="utf-8")
    try:
        import tomllib
    except ImportError:  # Python 3.10: the table is two plain lines, read them directly
        table = re.search(r"^\[tool\.setuptools\.package-dir\]\n((?:[^\[\n].*\n?)*)", text, re.M)
        pairs = re.findall(r'^"?([\w.]+)"?\s*=\s*"([^"]*)"', table.group(1) if table else "", re.M)
        mapping = dict(pairs)
    else:
        mapping = tomllib.loads(text).get("tool", {}).get("setuptools", {}).get("package-dir", {})
    return {name: ROOT / folder for name, folder in mapping.items() if name.startswith(PACKAGE + ".") and folder}


class PackageDirs(griffe.Extension):
    """Attach ``models/`` and ``guides/`` as ``ppl_vae.models`` and ``ppl_vae.guides``; turn roles into links."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs) -> None:
        if pkg.name != PACKAGE:
            return
        for name, folder in package_dirs().items():
            parent = pkg
            for part in name.split(".")[1:-1]:
                parent = parent.members[part]
            if (folder / "__init__.py").is_file():
                parent.set_member(name.rsplit(".", 1)[1], self._visit_folder(name.rsplit(".", 1)[1], folder, parent, loader))
        for obj in _objects(pkg):
            if obj.docstring is not None:
                obj.docstring.value = _markdown(obj.docstring.value, obj)

    def _visit_folder(self, name: str, folder: Path, parent: griffe.Module, loader: griffe.GriffeLoader) -> griffe.Module:
        module = self._visit_file(name, folder / "__init__.py", parent, loader)
        for path in sorted(folder.iterdir()):
            if path.suffix == ".py" and path.stem != "__init__":
                module.set_member(path.stem, self._visit_file(path.stem, path, module, loader))
            elif path.is_dir() and (path / "__init__.py").is_file():
                module.set_member(path.name, self._visit_folder(path.name, path, module, loader))
        return module

    @staticmethod
    def _visit_file(name: str, path: Path, parent: griffe.Module, loader: griffe.GriffeLoader) -> griffe.Module:
        code = path.read_text(encoding="utf-8-sig")
        if loader.store_source:
            loader.lines_collection[path] = code.splitlines()
        return griffe.visit(name, filepath=path, code=code, extensions=loader.extensions, parent=parent,
                            docstring_parser=loader.docstring_parser, docstring_options=loader.docstring_options,
                            lines_collection=loader.lines_collection, modules_collection=loader.modules_collection)


def _objects(obj):
    """``obj`` and every object defined under it (not what it imports)."""
    yield obj
    for member in list(obj.members.values()):
        if not member.is_alias:
            yield from _objects(member)


def _markdown(text: str, obj) -> str:
    """A docstring's reStructuredText habits in Markdown: roles as links, ``text::`` before a literal block
    as ``text:`` (the indented block is a code block in both), and a simple table (``===  ===`` borders)
    as a code block, so that its columns stay aligned (its roles and double-backquoted code as plain text)."""
    lines, out, n, fenced = text.split("\n"), [], 0, False
    while n < len(lines):
        borders = [k for k in range(n, len(lines)) if TABLE_BORDER.match(lines[k])][:3] if TABLE_BORDER.match(lines[n]) else []
        if len(borders) == 3:
            table = [ROLE.sub(lambda m: _title(m), line).replace("``", "") for line in lines[borders[0]:borders[2] + 1]]
            out += ["```text", *table, "```"]
            n = borders[2] + 1
            continue
        line = lines[n]
        fenced = fenced != (line.lstrip().startswith("```"))  # a fence opens or closes a code block
        if not fenced and not line.startswith("    ") and not line.lstrip().startswith("```"):
            line = _unlinked(line)
        out.append(LITERAL_MARKER.sub(r"\1:", ROLE.sub(lambda m: _link(m, obj), line)))
        n += 1
    return "\n".join(out)


def _unlinked(line: str) -> str:
    """The line with a zero-width space after each "]" that Markdown would read as the start of a link
    (``E[z][0]``, ``[a] [b]``, ``f[x](y)``), outside code spans: docstrings write math, not links."""
    pieces, last = [], 0
    for span in CODE_SPAN.finditer(line):
        pieces += [BRACKETS.sub("]&#8203;", line[last:span.start()]), span.group(0)]
        last = span.end()
    return "".join(pieces) + BRACKETS.sub("]&#8203;", line[last:])


def _title(match: re.Match) -> str:
    """What a role shows: ``:func:`~a.b.c``` shows ``c``, ``:func:`a.b.c``` all of it, ``:func:`text <a.b>``` the text."""
    short, text, target = match.group(1), match.group(2).strip(), match.group(3)
    if target:
        return text
    target = text.removesuffix("()")
    return target.rsplit(".", 1)[-1] if short else target


def _link(match: re.Match, obj) -> str:
    """The autorefs tag for one Sphinx role: ``:func:`~a.b.c``` shows ``c``, links to ``a.b.c``."""
    target = (match.group(3) or match.group(2)).strip().removesuffix("()")
    head, dot, rest = target.partition(".")
    try:
        identifier = obj.resolve(head) + dot + rest
    except griffe.NameResolutionError:  # a name the object's scope does not know: keep it as written
        identifier = target
    title = _title(match)
    return f'<autoref identifier="{identifier}" optional><code>{title}</code></autoref>'
