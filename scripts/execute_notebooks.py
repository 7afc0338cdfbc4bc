#!/usr/bin/env python3
"""Execute the notebooks (notebooks/[0-9]*.py, jupytext percent format) into a cache outside git, for the site.

``make docs`` runs this before ``mkdocs build``: each notebook is executed in full (not the test suite's
fast mode), top to bottom, with nbclient in a kernel of this interpreter, with one torch thread, in
``notebooks/`` (where jupyter runs it, so its ``DATA_DIR`` means what it says), and saved with its outputs
as ``.cache/notebooks/NAME.ipynb`` (git ignores ``.cache/``). The saved notebook's metadata holds the
SHA-256 of the ``.py`` it was executed from; a notebook whose ``.py`` has not changed since is not executed
again, and the documentation hook (docs/hooks/notebooks.py) shows a cached copy's outputs only when that
hash matches the ``.py`` it renders, so the site never shows a figure of an older version of a notebook.

The cache folder is ``.cache/notebooks`` under the repository, or ``$PPL_VAE_NOTEBOOK_CACHE``; a run over
every notebook removes the executed copies there of notebooks that no longer exist (renamed or removed).
``--force`` executes again even unchanged notebooks (after a change to the library, say).

Usage:

    python scripts/execute_notebooks.py                     # every notebook whose .py changed
    python scripts/execute_notebooks.py notebooks/01_vae_and_ppca.py --force
    python scripts/execute_notebooks.py --list              # each notebook: up to date, changed or not executed

Exit code: 0 when every notebook is executed and up to date, 1 when one failed (the others are still
executed; a failed notebook's page shows its code without outputs), 2 on bad usage.

tests/test_notebooks.py executes the notebooks with :func:`execute` too, in their fast mode.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
CACHE_ENV = "PPL_VAE_NOTEBOOK_CACHE"
METADATA_KEY = "ppl_vae"  # the executed notebook's metadata entry: {"source_sha256", "executed", "seconds", "mode"}


def notebooks() -> list[Path]:
    """The notebooks, in order: notebooks/[0-9]*.py."""
    return sorted(NOTEBOOK_DIR.glob("[0-9]*.py"))


def cache_dir() -> Path:
    return Path(os.environ[CACHE_ENV]).resolve() if os.environ.get(CACHE_ENV) else ROOT / ".cache" / "notebooks"


def cached_path(path: Path, cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / f"{path.stem}.ipynb"


def source_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cached_metadata(path: Path, cache: Path | None = None) -> dict | None:
    """What the cached executed copy of ``path`` says about itself; None when there is none (or unreadable)."""
    import json

    try:
        nb = json.loads(cached_path(path, cache).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    info = nb.get("metadata", {}).get(METADATA_KEY)
    return info if isinstance(info, dict) else None


def up_to_date(path: Path, cache: Path | None = None) -> bool:
    """Whether the cache holds ``path`` executed from its current source."""
    info = cached_metadata(path, cache)
    return info is not None and info.get("source_sha256") == source_hash(path)


def execute(path: Path, cwd: Path, fast: bool, timeout: int):
    """``path`` executed top to bottom in a kernel of this interpreter (kernelspec ``python3``) with one torch
    thread, in ``cwd``; ``fast`` sets ``PPL_VAE_NOTEBOOK_FAST=1``. Returns the nbformat notebook with its
    outputs; raises nbclient's ``CellExecutionError`` on the first cell that fails."""
    import jupytext
    import nbclient

    nb = jupytext.read(path)
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # the kernel's own inline backend draws
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PPL_VAE_NOTEBOOK_FAST="1" if fast else "0")
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=timeout,
                                     resources={"metadata": {"path": str(cwd)}})
    client.execute(env=env)
    return nb


def execute_into_cache(path: Path, cache: Path, timeout: int) -> float:
    """Execute ``path`` in full and save it with its outputs into ``cache``; the seconds it took."""
    import nbformat

    digest, start = source_hash(path), time.perf_counter()
    nb = execute(path, path.parent, fast=False, timeout=timeout)
    seconds = time.perf_counter() - start
    nb.metadata[METADATA_KEY] = {"source_sha256": digest, "executed": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                 "seconds": round(seconds, 1), "mode": "full"}
    cache.mkdir(parents=True, exist_ok=True)
    target = cached_path(path, cache)
    partial = target.with_suffix(".ipynb.partial")
    nbformat.write(nb, str(partial))
    partial.replace(target)  # a build never reads a half-written notebook
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks to execute (default: every notebooks/[0-9]*.py)")
    parser.add_argument("--force", action="store_true", help="execute even the notebooks whose cached copy is up to date")
    parser.add_argument("--list", action="store_true", help="say which notebooks are up to date, execute nothing")
    parser.add_argument("--timeout", type=int, default=600, help="seconds one cell may run (default 600)")
    args = parser.parse_args(argv)

    paths = [p.resolve() for p in args.paths] or notebooks()
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"execute_notebooks: no such notebook: {', '.join(missing)}", file=sys.stderr)
        return 2
    cache = cache_dir()
    if not args.paths and not args.list and cache.is_dir():  # executed copies of notebooks since renamed or removed
        for orphan in sorted(set(cache.glob("*.ipynb")) - {cached_path(p, cache) for p in paths}):
            orphan.unlink()
            print(f"{orphan.stem}: no notebooks/{orphan.stem}.py any more; its executed copy removed")
    failed = []
    for path in paths:
        if args.list:
            state = ("up to date" if up_to_date(path, cache) else
                     "changed since executed" if cached_metadata(path, cache) else "not executed")
            print(f"{path.stem}: {state}")
            continue
        if up_to_date(path, cache) and not args.force:
            print(f"{path.stem}: up to date in {cached_path(path, cache)}", flush=True)
            continue
        print(f"{path.stem}: executing ...", flush=True)
        try:
            seconds = execute_into_cache(path, cache, args.timeout)
        except Exception as error:  # noqa: BLE001 - the other notebooks still run; the failure is reported below
            failed.append(path.stem)
            print(f"{path.stem}: FAILED: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
            continue
        print(f"{path.stem}: executed in {seconds:.0f} s into {cached_path(path, cache)}", flush=True)
    if failed:
        print(f"execute_notebooks: {len(failed)} failed ({', '.join(failed)}); their pages show the code without outputs",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
