#!/usr/bin/env python3
"""Rerun the commands the README and the documentation pages quote and check that their output has not moved.

The README and the pages of the documentation site show commands together with the output of a
real run. This script reruns those commands in order — README.md first, then the pages in the order
of mkdocs.yml's ``nav`` — as a newcomer would after cloning, and reports every number in the output
that moved by more than the tolerance its block states, and every line whose text changed. With
``--write`` it rewrites the quoted output, in the file each block came from, with the new output,
which is how the README and the pages are regenerated.

Reproducibility: on the same machine and torch build every number is bit-identical, so the
default tolerance is 0 (numbers must match as printed). Elsewhere the numbers agree to
Monte-Carlo noise, and each block's tolerance states how much.

Usage, from a fresh clone (the commands write runs/, so a used checkout is refused):

    git clone . /tmp/fresh && cd /tmp/fresh && python3 scripts/check_readme.py
    python3 scripts/check_readme.py --list                # what would run, with options, files and lines
    python3 scripts/check_readme.py --only "ppl-vae gaps"  # one command (plus `make demo` before it)
    python3 scripts/check_readme.py --clean --write       # delete runs/, rerun, regenerate README.md and the pages
    python3 scripts/check_readme.py --no-docs             # README.md alone

Files: README.md (or ``--readme FILE``), then, when the repository has a ``mkdocs.yml``, every
Markdown page its ``nav`` lists (paths relative to its ``docs_dir``, ``docs`` by default), in that
order, as one sequence: a command on a page may use what a README command or an earlier page
wrote. The same conventions hold in every file, and every message names the file and line.
A command quoted twice with the same options and the same expected output (the README's demo
block, repeated on the tour's first page) runs once; each copy is compared and written.

Conventions (Markdown, in the README and in each page):

1. Commands live in fenced code blocks (```). Inside a block, a line starting with ``$ ``
   begins a command; a command line ending with a backslash continues on the next line, as
   in bash. The lines after a command, up to the next ``$ `` line or the end of the block, are
   its expected output (possibly none). Blocks without a ``$ `` line are ignored.

2. An HTML comment on the line(s) right before a block's opening fence (blank lines allowed
   in between) sets options for every command of that block:

       <!-- check-readme: tol=0.05 -->            absolute tolerance for every number (default 0)
       <!-- check-readme: rtol=0.01 -->           relative tolerance, |got - expected| <= rtol |expected|;
                                                  with tol as well (tol=0.05 rtol=0.01) a number
                                                  passes if within either
       <!-- check-readme: skip REASON -->         do not run these commands; listed as skipped
       <!-- check-readme: run-only -->            run them (later commands may need them) but do
                                                  not compare their output

3. A region outside code blocks may quote a file that a command wrote, e.g. a Markdown table:

       <!-- check-readme: file runs/compare/comparison.md tol=0.02 -->
       | objective | test ELBO |
       ...
       <!-- check-readme: end -->

   After all commands have run, the lines in between are compared with the file (path
   relative to the repository root) with the region's tol / rtol; ``--write`` replaces them
   with the file's lines. If the region's lines are one fenced code block, its inside is what
   is compared and written. A missing file counts as a failure unless ``--skip-missing-files``.

Comparison: expected and actual output are split into lines; empty lines, ANSI colour codes
and progress bars (tqdm redraws with ``\\r``; fragments containing ``%|``, ``it/s]``,
``step/s]``, ...) are dropped. Lines are matched in order: with every number replaced by a
placeholder the text must be equal ("text changed"), and each pair of numbers must agree
within the tolerance ("number moved"); lines only one side has are reported as missing or
extra. A number is an integer, decimal or scientific literal with an optional sign (``−``,
U+2212, counts as minus) standing on its own: in ``iwae2`` or ``z1`` the digit is part of a
word, and ``1.9.2`` is a version, so both are compared as text.

Timings: wall-clock times vary from run to run, so they are not compared (the summary counts
them as "timings not compared"), though ``--write`` updates them like every other number. A
timing is

- a number directly followed by a unit of time as a whole word: ``12.3 s``, ``4.34 ms``,
  ``2 min 54 s``, ``1.5 h``, ``0.23 s/epoch``, ``2 ms per step`` (units ``s``, ``ms``, ``µs``,
  ``sec``, ``secs``, ``second(s)``, ``min``, ``mins``, ``minute(s)``, ``h``, ``hour(s)``); the
  ``s`` of ``3 steps`` or ``5 samples`` is part of a word, so those numbers are compared;
- in a Markdown table (lines starting with ``|``, a header row followed by a ``|---|`` row),
  every number below the header in a column whose header cell names seconds or time as a
  word: ``s``, ``(s)``, ``s/epoch``, ``s / epoch (median)``, ``fit (s)``, ``ms``, ``sec``,
  ``seconds``, ``time``;
- a date, ``2026-11-22``: when the run happened.

A file region that is not a code block keeps the blank lines at its top and bottom (Markdown
needs them around a table); ``--write`` replaces only the lines in between.

Running: each command runs with ``bash -c`` in the repository root (the folder above
scripts/, or ``--root``), with ``.venv/bin`` first on PATH and VIRTUAL_ENV set, as after
``source .venv/bin/activate`` (the first README command, ``make demo``, creates .venv);
stdout and stderr are captured together, in order. A nonzero exit code is only noted: a
README that shows a failing command shows its message (and ``echo "exit $?"``) as output.

Exit code: 0 when nothing moved, 1 when a number moved, a text changed, a command timed out or
a quoted file is missing (with ``--write`` the README is rewritten all the same), 2 on bad
usage (unknown option, malformed README, runs/ not empty).
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

DEFAULT_ROOT = Path(__file__).resolve().parent.parent

# A number stands on its own: not glued to a word (iwae2, z1) nor part of a version (1.9.2);
# a full stop right after it is punctuation.
NUMBER = re.compile(r"(?<![\w.])[-+−]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?!\w|\.\d)")
PLACEHOLDER = "\x00"  # never in real output, so a template cannot collide with literal text
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
PROGRESS_MARKS = ("%|", "it/s]", "it/s,", "s/it]", "s/it,", "step/s]", "step/s,", "s/step]", "s/step,")
FENCE = re.compile(r"^( *)(`{3,}|~{3,})")
COMMENT = re.compile(r"^\s*<!--\s*check-readme:(.*?)-->\s*$", re.S)
# A unit of time right after a number, as a whole word: "12.3 s", "0.23 s/epoch", not the s of "3 steps".
TIME_UNIT = re.compile(r"\s*(?:s|ms|µs|secs?|seconds?|mins?|minutes?|h|hours?)(?![\w'’])")
# A table header cell naming seconds or time: "s / epoch (median)", "fit (s)", "ms", "time"; not "guide's".
TIME_HEADER = re.compile(r"(?<![\w'’])(?:s|ms|µs|secs?|seconds?|time)(?![\w'’])", re.I)
DATE = re.compile(r"(?<![\w.])\d{4}-\d{2}-\d{2}(?!\w|\.\d)")
PIPE = re.compile(r"(?<!\\)\|")  # a cell border; \| inside a cell is a literal pipe
SEPARATOR_CELL = re.compile(r"^\s*:?-+:?\s*$")


class ReadmeError(Exception):
    """A malformed README convention, at a 1-based line."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line


@dataclass
class Options:
    tol: Decimal = Decimal(0)
    rtol: Decimal = Decimal(0)
    skip: str | None = None
    run_only: bool = False

    def describe(self) -> str:
        parts = [f"tol={self.tol}"] * bool(self.tol) + [f"rtol={self.rtol}"] * bool(self.rtol) or ["exact"]
        if self.run_only:
            parts.append("run-only")
        if self.skip is not None:
            parts.append(f"skip: {self.skip}")
        return ", ".join(parts)


@dataclass
class Command:
    source: str      # what bash runs: the command lines with their backslash continuations
    line: int        # 1-based README line of the `$ `
    out_start: int   # README line indices (0-based, end exclusive) of the expected output
    out_end: int
    indent: str      # the fence's indentation, put back on written lines
    options: Options
    doc: Readme | None = field(default=None, repr=False, compare=False)  # the file it is quoted in

    @property
    def text(self) -> str:
        """The command on one line, joined as bash joins continuation lines."""
        return re.sub(r"\s*\\\n\s*", " ", self.source).strip()


@dataclass
class FileRegion:
    path: str
    line: int        # 1-based README line of the `file` comment
    start: int       # README line indices of the quoted lines (0-based, end exclusive)
    end: int
    indent: str
    options: Options
    doc: Readme | None = field(default=None, repr=False, compare=False)


@dataclass
class Readme:
    lines: list[str]
    commands: list[Command] = field(default_factory=list)
    regions: list[FileRegion] = field(default_factory=list)
    name: str = "README.md"        # as messages show it: relative to the repository root
    path: Path | None = None       # where --write writes it


@dataclass
class Finding:
    kind: str        # "number", "text", "note" (not counted) or "timing" (not compared, counted apart)
    line: int | None
    message: str


@dataclass
class Result:
    output: str
    code: int
    seconds: float
    timed_out: bool


# ---------------------------------------------------------------- parsing


def parse(text: str) -> Readme:
    """Commands and file regions of a README, in order."""
    doc = Readme(lines=text.split("\n"))
    lines = [line.rstrip("\r") for line in doc.lines]
    used_comments: set[int] = set()
    stray: list[int] = []
    i = 0
    while i < len(lines):
        words = comment_words(lines[i])
        if words is not None and words[:1] == ["file"]:
            region, i = parse_region(lines, i, words)
            doc.regions.append(region)
            continue
        if words is not None and words[:1] == ["end"]:
            raise ReadmeError(i + 1, "check-readme: end without a file comment before it")
        if words is not None:
            stray.append(i)
        fence = FENCE.match(lines[i])
        if fence:
            commands, i = parse_block(lines, i, fence, used_comments)
            doc.commands.extend(commands)
            continue
        i += 1
    for i in stray:
        if i not in used_comments:
            raise ReadmeError(i + 1, "check-readme options must come right before the opening fence of a code block with `$ ` commands")
    return doc


def comment_words(line: str) -> list[str] | None:
    """The words of a one-line check-readme comment, or None for any other line."""
    match = COMMENT.match(line)
    return match.group(1).split() if match else None


def parse_block(lines: list[str], start: int, fence: re.Match, used_comments: set[int]):
    """The commands of the code block opening at `start`, and the index after its closing fence."""
    indent, marker = len(fence.group(1)), fence.group(2)
    end = next((j for j in range(start + 1, len(lines)) if is_closing(lines[j], marker)), None)
    if end is None:
        raise ReadmeError(start + 1, "code block opened here is never closed")
    body = {j: dedent(lines[j], indent) for j in range(start + 1, end)}
    if not any(line.startswith("$ ") for line in body.values()):
        return [], end + 1
    options = block_options(lines, start, used_comments)
    commands = []
    j = start + 1
    while j < end:
        if not body[j].startswith("$ "):
            j += 1  # text before the first command is not output of anything
            continue
        first = j
        source = [body[j][2:]]
        while source[-1].endswith("\\") and j + 1 < end:
            j += 1
            source.append(body[j])
        j += 1
        out_start = j
        while j < end and not body[j].startswith("$ "):
            j += 1
        commands.append(Command("\n".join(source), first + 1, out_start, j, " " * indent, options))
    return commands, end + 1


def is_closing(line: str, marker: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(marker) and not stripped.strip(marker[0])


def dedent(line: str, indent: int) -> str:
    return line[min(indent, len(line) - len(line.lstrip(" "))):]


def block_options(lines: list[str], fence: int, used_comments: set[int]) -> Options:
    """Options from the check-readme comments right above a block's fence (blank lines allowed)."""
    found = []
    j = fence - 1
    while j >= 0:
        if not lines[j].strip():
            j -= 1
            continue
        if not lines[j].rstrip().endswith("-->"):
            break
        k = j
        while k >= 0 and "<!--" not in lines[k]:
            k -= 1  # a comment may span several lines
        words = comment_words(" ".join(lines[max(k, 0):j + 1]))
        if k < 0 or words is None or words[:1] in (["file"], ["end"]):
            break
        found.append((k, words))
        j = k - 1
    options = Options()
    for k, words in reversed(found):  # top to bottom, so the comment nearest the block wins
        used_comments.add(k)
        parse_options(words, k + 1, options)
    return options


def parse_options(words: list[str], line: int, options: Options, block: bool = True) -> Options:
    for n, word in enumerate(words):
        if block and word == "skip":
            options.skip = " ".join(words[n + 1:]) or "no reason given"
            break
        if block and word == "run-only":
            options.run_only = True
            continue
        key, sep, value = word.partition("=")
        if sep and key in ("tol", "rtol"):
            setattr(options, key, tolerance(value, line))
            continue
        known = "tol=, rtol=, skip REASON, run-only" if block else "tol=, rtol="
        raise ReadmeError(line, f"unknown check-readme option {word!r} (known: {known})")
    return options


def tolerance(value: str, line: int) -> Decimal:
    try:
        number = Decimal(value)
    except InvalidOperation:
        number = Decimal("NaN")
    if not number.is_finite() or number < 0:
        raise ReadmeError(line, f"a tolerance must be a number >= 0, got {value!r}")
    return number


def parse_region(lines: list[str], start: int, words: list[str]):
    """The file region whose `file` comment is at `start`, and the index after its `end` comment."""
    if len(words) < 2:
        raise ReadmeError(start + 1, "check-readme: file needs a path")
    options = parse_options(words[2:], start + 1, Options(), block=False)
    for j in range(start + 1, len(lines)):
        inner = comment_words(lines[j])
        if inner is None:
            continue
        if inner[:1] != ["end"]:
            raise ReadmeError(j + 1, "check-readme comment inside a file region; is its end comment missing?")
        first, last, indent = fenced_inside(lines, start + 1, j)
        return FileRegion(words[1], start + 1, first, last, indent, options), j + 1
    raise ReadmeError(start + 1, "file region never ends; add <!-- check-readme: end -->")


def fenced_inside(lines: list[str], start: int, end: int):
    """The region's lines without the blank lines at its top and bottom, or the inside of the one
    code block they form."""
    filled = [j for j in range(start, end) if lines[j].strip()]
    if len(filled) >= 2:
        fence = FENCE.match(lines[filled[0]])
        if fence and is_closing(lines[filled[-1]], fence.group(2)):
            return filled[0] + 1, filled[-1], fence.group(1)
    if filled:
        return filled[0], filled[-1] + 1, ""
    return start, end, ""


def nav_pages(root: Path) -> list[Path]:
    """The Markdown pages of ROOT/mkdocs.yml's nav, in order (none without a mkdocs.yml).

    Read without a YAML parser (the script uses the standard library only): ``docs_dir`` and the
    ``.md`` path ending each line of the top-level ``nav:`` block, whether the entry is titled
    (``- Layout: layout.md``) or not (``- tour/01-demo.md``); links to sites are left out."""
    config = root / "mkdocs.yml"
    if not config.is_file():
        return []
    text = config.read_text(encoding="utf-8")
    docs_dir = re.search(r"^docs_dir:\s*['\"]?([^'\"#\s]+)", text, re.M)
    docs = root / (docs_dir.group(1) if docs_dir else "docs")
    pages, in_nav = [], False
    for line in text.split("\n"):
        if re.match(r"^nav:\s*(#.*)?$", line):
            in_nav = True
            continue
        if in_nav and line.strip() and not line.startswith((" ", "\t", "#")):
            break  # the next top-level key
        page = re.search(r"['\"]?([^'\"\s:]+\.md)['\"]?\s*(#.*)?$", line) if in_nav else None
        if page and "://" not in line:
            pages.append(docs / page.group(1))
    return pages


def load(path: Path, root: Path) -> Readme:
    """One file's commands and regions (ReadmeError names its line; OSError when it cannot be read)."""
    with open(path, encoding="utf-8", newline="") as f:
        doc = parse(f.read())
    doc.name, doc.path = display_name(path, root), path
    for item in [*doc.commands, *doc.regions]:
        item.doc = doc
    return doc


# ---------------------------------------------------------------- comparing


def numbers(line: str) -> tuple[str, list[str]]:
    """The line with every number replaced by a placeholder, and the numbers as printed."""
    return NUMBER.sub(PLACEHOLDER, line), NUMBER.findall(line)


def is_table_row(line: str) -> bool:
    return line.lstrip().startswith("|")


def is_separator(line: str) -> bool:
    """A Markdown table's |---|:--:| row."""
    cells = PIPE.split(line.strip())
    cells = cells[1:-1] if cells[-1].strip() == "" else cells[1:]
    return is_table_row(line) and bool(cells) and all(SEPARATOR_CELL.match(cell) for cell in cells)


def timings(lines: list[str]) -> list[set[int]]:
    """For each line, the positions (in the order of `numbers`) of its numbers that are timings:
    followed by a unit of time, in a table column whose header names seconds or time, or in a date."""
    found: list[set[int]] = []
    columns: set[int] = set()  # timing columns of the table the line is in
    for n, line in enumerate(lines):
        header = is_table_row(line) and n + 1 < len(lines) and is_separator(lines[n + 1])
        if header:
            columns = {k for k, cell in enumerate(PIPE.split(line)) if TIME_HEADER.search(cell)}
        elif not is_table_row(line):
            columns = set()
        dates = [m.span() for m in DATE.finditer(line)]
        marked = set()
        for k, match in enumerate(NUMBER.finditer(line)):
            in_column = not header and len(PIPE.findall(line, 0, match.start())) in columns
            in_date = any(a <= match.start() and match.end() <= b for a, b in dates)
            if in_column or in_date or TIME_UNIT.match(line, match.end()):
                marked.add(k)
        found.append(marked)
    return found


def is_progress(fragment: str) -> bool:
    return any(mark in fragment for mark in PROGRESS_MARKS)


def fragments(line: str) -> list[str]:
    """What a reader keeps of one output line: tqdm redraws its bar after \\r, so split there, drop bars."""
    parts = ANSI.sub("", line).split("\r")
    return [part.rstrip() for part in parts if part.strip() and not is_progress(part)]


def output_lines(text: str, keep_blank: bool = False) -> list[str]:
    """Output as lines to compare (no blank lines) or to write (blank lines inside kept)."""
    lines: list[str] = []
    for line in text.split("\n"):
        parts = fragments(line)
        if parts:
            lines.extend(parts)
        elif keep_blank and "\r" not in line and not line.strip():
            lines.append("")
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return lines


def numbered_lines(lines: list[str], start: int, end: int, indent: int) -> list[tuple[int, str]]:
    """README lines start..end as (1-based line number, fragment) pairs to compare."""
    return [(j + 1, part) for j in range(start, end) for part in fragments(dedent(lines[j].rstrip("\r"), indent))]


def to_decimal(number: str) -> Decimal:
    return Decimal(number.replace("−", "-"))


def within(expected: str, got: str, options: Options) -> bool:
    if expected == got:
        return True
    if not options.tol and not options.rtol:
        return False  # tolerance 0: as printed, so 23.5 against 23.50 is a change too
    diff = abs(to_decimal(got) - to_decimal(expected))
    return diff <= options.tol or diff <= options.rtol * abs(to_decimal(expected))


def tolerance_text(options: Options) -> str:
    parts = [str(options.tol)] if options.tol or not options.rtol else []
    if options.rtol:
        parts.append(f"rtol {options.rtol}")
    return " or ".join(parts)


def compare(expected: list[tuple[int, str]], actual: list[str], options: Options, line: int) -> list[Finding]:
    """Findings of actual output against the README's (line number, text) pairs.

    Lines are aligned on their text without numbers, so one extra or missing line is reported
    once instead of shifting every line after it."""
    findings = []
    if len(expected) != len(actual):
        findings.append(Finding("note", line, f"expected {len(expected)} lines of output, got {len(actual)}"))
    exp = [numbers(text) for _, text in expected]
    got = [numbers(text) for text in actual]
    exp_times, got_times = timings([text for _, text in expected]), timings(actual)
    matcher = difflib.SequenceMatcher(None, [t for t, _ in exp], [t for t, _ in got], autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        for k in range(max(i2 - i1, j2 - j1)):
            i, j = i1 + k, j1 + k
            where = expected[min(i, i2 - 1)][0] if i2 > i1 else (expected[i1 - 1][0] if i1 else line)
            if op == "equal":
                findings += moved_numbers(exp[i][1], got[j][1], actual[j], options, where, exp_times[i] | got_times[j])
            elif i < i2 and j < j2:
                findings.append(Finding("text", where, f'text changed: expected "{expected[i][1]}" got "{actual[j]}"'))
            elif i < i2:
                findings.append(Finding("text", where, f'line missing: expected "{expected[i][1]}"'))
            else:
                findings.append(Finding("text", where, f'extra line: got "{actual[j]}"'))
    return findings


def moved_numbers(expected: list[str], got: list[str], text: str, options: Options, line: int,
                  times: set[int] = frozenset()) -> list[Finding]:
    """A "number" finding for each pair outside the tolerance, a "timing" one for each timing (not compared)."""
    findings = []
    for k, (e, g) in enumerate(zip(expected, got)):
        if k in times:
            findings.append(Finding("timing", line, f"timing not compared: expected {e} got {g}: {text}"))
        elif not within(e, g, options):
            findings.append(Finding("number", line, f"number moved: expected {e} got {g} "
                                                    f"(tolerance {tolerance_text(options)}): {text}"))
    return findings


# ---------------------------------------------------------------- running


def command_env(root: Path) -> dict[str, str]:
    """The environment after `source .venv/bin/activate` in the repository."""
    env = dict(os.environ)
    venv = root / ".venv"
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONHOME", None)
    env["PYTHONUNBUFFERED"] = "1"  # stdout and stderr then interleave as they would on a terminal
    return env


def run_command(source: str, root: Path, env: dict[str, str], timeout: float) -> Result:
    start = time.monotonic()
    # Its own process group, so a timeout or Ctrl-C also ends what the command started in the background.
    proc = subprocess.Popen(["bash", "-c", source], cwd=root, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    timed_out = False
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc, signal.SIGKILL)
        out, _ = proc.communicate()
        timed_out = True
    except KeyboardInterrupt:
        kill_group(proc, signal.SIGTERM)
        raise
    return Result(out.decode("utf-8", "replace"), proc.returncode, time.monotonic() - start, timed_out)


def kill_group(proc: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(proc.pid, signum)
    except ProcessLookupError:
        pass


def plan(commands: list[Command], only: str | None) -> list[tuple[Command, bool]]:
    """(command, compare it?) pairs to go through: all, or those containing `only` plus `make demo` before them."""
    if only is None:
        return [(c, True) for c in commands]
    hits = {n for n, c in enumerate(commands) if only in c.text}
    if not hits:
        return []
    return [(c, n in hits) for n, c in enumerate(commands[:max(hits) + 1])
            if n in hits or c.text.startswith("make demo")]


# ---------------------------------------------------------------- writing


def rewrite(lines: list[str], edits: list[tuple[int, int, list[str]]]) -> str:
    """The README with lines start..end of each edit replaced; every other line as it was."""
    lines = list(lines)
    for start, end, new in sorted(edits, reverse=True):
        lines[start:end] = new
    return "\n".join(lines)


def write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        shutil.copymode(path, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    return text[:-1].split("\n") if text.endswith("\n") else text.split("\n")


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="check_readme", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT,
                        help="repository root, where commands run (default: the folder above scripts/)")
    parser.add_argument("--readme", type=Path, help="the README to check first (default: ROOT/README.md)")
    parser.add_argument("--no-docs", action="store_true",
                        help="check the README alone, not the pages of ROOT/mkdocs.yml's nav after it")
    parser.add_argument("--list", action="store_true",
                        help="print each command with its options, file and line; run nothing")
    parser.add_argument("--only", metavar="SUBSTRING",
                        help="run only commands containing SUBSTRING, plus every `make demo` before them")
    parser.add_argument("--write", action="store_true",
                        help="rewrite the quoted output with the new output, in the file each block came from")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per command (default 1800)")
    parser.add_argument("--clean", action="store_true", help="delete runs/ first instead of refusing to start")
    parser.add_argument("--skip-missing-files", action="store_true",
                        help="a file region whose file is missing is reported but not counted as failed")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    args.root = args.root.resolve()
    args.readme = (args.readme or args.root / "README.md").resolve()
    return args


def display_name(readme: Path, root: Path) -> str:
    try:
        return str(readme.relative_to(root))
    except ValueError:
        return str(readme)


def print_list(docs: list[Readme]) -> None:
    for doc in docs:
        for c in doc.commands:
            print(f"{doc.name}:{c.line}: $ {c.text}  [{c.options.describe()}]")
        for r in doc.regions:
            print(f"{doc.name}:{r.line}: file {r.path}  [{r.options.describe()}]")


def runs_in_the_way(root: Path, clean: bool) -> bool:
    """True (after saying why) when runs/ holds earlier results; with --clean it is deleted instead."""
    runs = root / "runs"
    if not runs.is_dir() or not any(runs.iterdir()):
        return False
    if clean:
        shutil.rmtree(runs)
        return False
    print(f"check_readme: {runs} is not empty, and this script runs the README's commands as a newcomer would, "
          f"so run it from a fresh clone (git clone . /tmp/fresh && cd /tmp/fresh && python3 scripts/check_readme.py) "
          f"or pass --clean to delete runs/ first.", file=sys.stderr)
    return True


def report(header: str, findings: list[Finding], name: str) -> None:
    print(header)
    for f in findings:
        print(f"  {name}:{f.line}: {f.message}" if f.line else f"  {f.message}")


def key(command: Command) -> tuple:
    """What makes two quotations of a command the same: its text, its options and its expected output."""
    expected = tuple(text for _, text in numbered_lines(command.doc.lines, command.out_start, command.out_end,
                                                         len(command.indent)))
    return command.source, command.options.describe(), expected


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    files = [args.readme] + ([] if args.no_docs else nav_pages(args.root))
    docs: list[Readme] = []
    for path in files:
        name = display_name(path, args.root)
        try:
            docs.append(load(path, args.root))
        except OSError as e:
            print(f"check_readme: cannot read {name}: {e.strerror}", file=sys.stderr)
            return 2
        except ReadmeError as e:
            print(f"check_readme: {name}:{e.line}: {e}", file=sys.stderr)
            return 2
    names = ", ".join(doc.name for doc in docs)
    if args.list:
        print_list(docs)
        return 0
    todo = plan([c for doc in docs for c in doc.commands], args.only)
    if args.only is not None and not todo:
        print(f"check_readme: no command in {names} contains {args.only!r}", file=sys.stderr)
        return 2
    if runs_in_the_way(args.root, args.clean):
        return 2

    env = command_env(args.root)
    edits: dict[int, list[tuple[int, int, list[str]]]] = {id(doc): [] for doc in docs}
    done: dict[tuple, tuple[Command, Result]] = {}  # a command quoted twice runs once
    moved = changed = ran = skipped = timed_out = missing = untimed = repeated = 0
    for n, (command, compared) in enumerate(todo, 1):
        doc, name = command.doc, command.doc.name
        if command.options.skip is not None:
            skipped += 1
            print(f"[{n}/{len(todo)}] skipped ({command.options.skip}): {command.text}", file=sys.stderr)
            print(f"{name}:{command.line}: skipped ({command.options.skip}): $ {command.text}")
            continue
        if key(command) in done:
            first, result = done[key(command)]
            repeated += 1
            print(f"[{n}/{len(todo)}] {command.text}: quoted before, at {first.doc.name}:{first.line}; not rerun",
                  file=sys.stderr, flush=True)
        else:
            print(f"[{n}/{len(todo)}] {command.text} ...", end=" ", file=sys.stderr, flush=True)
            result = run_command(command.source, args.root, env, args.timeout)
            done[key(command)] = (command, result)
            ran += 1
            status = f"timed out after {args.timeout:g} s" if result.timed_out else f"exit {result.code}"
            print(f"{result.seconds:.1f} s, {status}", file=sys.stderr, flush=True)
        if result.timed_out:
            timed_out += 1
            status = f"timed out after {args.timeout:g} s"
            report(f"{name}:{command.line}: $ {command.text}", [Finding("text", None, status)], name)
            continue
        if not compared or command.options.run_only:
            continue
        expected = numbered_lines(doc.lines, command.out_start, command.out_end, len(command.indent))
        findings = compare(expected, output_lines(result.output), command.options, command.line)
        moved += sum(f.kind == "number" for f in findings)
        changed += sum(f.kind == "text" for f in findings)
        untimed += sum(f.kind == "timing" for f in findings)
        findings = [f for f in findings if f.kind != "timing"]
        if findings:
            report(f"{name}:{command.line}: $ {command.text}", findings, name)
        edits[id(doc)].append((command.out_start, command.out_end,
                               [command.indent + line if line else "" for line in output_lines(result.output, keep_blank=True)]))

    regions = [region for doc in docs for region in doc.regions]
    for region in regions:
        doc, name = region.doc, region.doc.name
        path = args.root / region.path
        header = f"{name}:{region.line}: file {region.path}"
        if not path.is_file():
            counted = not (args.skip_missing_files or args.only is not None)
            missing += counted
            report(header, [Finding("note", None, "file missing" + ("" if counted else " (not counted)"))], name)
            continue
        content = read_lines(path)
        expected = numbered_lines(doc.lines, region.start, region.end, len(region.indent))
        findings = compare(expected, [part for line in content for part in fragments(line)], region.options, region.line)
        moved += sum(f.kind == "number" for f in findings)
        changed += sum(f.kind == "text" for f in findings)
        untimed += sum(f.kind == "timing" for f in findings)
        findings = [f for f in findings if f.kind != "timing"]
        if findings:
            report(header, findings, name)
        edits[id(doc)].append((region.start, region.end, [region.indent + line if line else "" for line in content]))

    if args.write:
        for doc in docs:
            if edits[id(doc)]:
                write_atomically(doc.path, rewrite(doc.lines, edits[id(doc)]))
                print(f"check_readme: rewrote {doc.name}", file=sys.stderr)
    failures = [f"{missing} files missing"] * bool(missing) + [f"{timed_out} timed out"] * bool(timed_out)
    print(f"check_readme: {ran} commands run, {skipped} skipped" + f", {repeated} repeated (run once)" * bool(repeated)
          + f", {len(regions)} file regions; "
          f"{moved} numbers moved, {changed} text changes" + f", {untimed} timings not compared" * bool(untimed)
          + "".join(f"; {f}" for f in failures))
    return 1 if moved or changed or missing or timed_out else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ncheck_readme: interrupted", file=sys.stderr)
        sys.exit(130)
