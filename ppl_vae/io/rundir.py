"""The run directory: ``config.json``, ``metrics.jsonl``, ``checkpoint.pt``, figures, results.

JSON files are replaced atomically; ``metrics.jsonl`` gets one line per epoch, and a line
cut short by a killed process is ignored when read back.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile

from ppl_vae.errors import UsageError
from ppl_vae.io import checkpoint

CONFIG = "config.json"
METRICS = "metrics.jsonl"
# What every config.json has held since the first version; a file without them is not a run's.
CONFIG_KEYS = ("dataset", "model", "guide", "objective", "epochs", "seed")


def require_run(run_dir: str) -> None:
    """Fail with one sentence unless ``run_dir`` holds a config and a checkpoint."""
    if not os.path.isdir(run_dir):
        what = "is a file, not a folder" if os.path.exists(run_dir) else "does not exist"
        raise UsageError(f"run directory {run_dir} {what}; pass a folder that `ppl-vae train --out` wrote.")
    missing = [n for n in (CONFIG, checkpoint.NAME) if not os.path.isfile(os.path.join(run_dir, n))]
    if missing:
        raise UsageError(f"{run_dir} is not a ppl-vae run directory (no {' or '.join(missing)}); "
                         f"pass a folder that `ppl-vae train --out` wrote.")


def read_config(run_dir: str) -> dict:
    path = os.path.join(run_dir, CONFIG)
    try:
        with open(path) as f:
            config = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"{path} cannot be read ({type(e).__name__}); it should be the config.json "
                         f"that `ppl-vae train` wrote.") from None
    missing = [k for k in CONFIG_KEYS if k not in config] if isinstance(config, dict) else ["all"]
    if missing and "objective" in config and "model" not in config or \
            isinstance(config, dict) and config.get("model", "") is None and not config.get("pair"):
        # what fit(model, guide, data) records, or a factory no spec can name (a lambda)
        raise UsageError(f"{run_dir} was trained from Python with a model and guide passed as objects, which no "
                         f"command can rebuild; train it with fit(make_pair, data) and a module-level make_pair, "
                         f"or with ppl-vae train --pair, to use it from the command line.")
    if missing:
        raise UsageError(f"{path} is not a ppl-vae config (missing {', '.join(missing[:3])}); it should be the "
                         f"config.json that `ppl-vae train` wrote.")
    return config


def write_json(path, obj) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def append_jsonl(path, obj) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(obj) + "\n")


def read_jsonl(path) -> list[dict]:
    if not os.path.exists(path):
        return []
    rows = []
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # a line cut short when the process was killed mid-write
    return rows


def write_jsonl(path, rows) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    os.replace(tmp, path)


def writable_dir(path: str) -> str:
    """Create ``path`` if needed; fail with one sentence if a file cannot be written in it."""
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()  # the real test: permissions, read-only mounts, full disks
    except OSError as e:
        raise UsageError(f"cannot write to the output folder {path} ({e.strerror or e}); "
                         f"choose another --out.") from None
    return path


@contextlib.contextmanager
def output_dir(path: str | None):
    """:func:`writable_dir` for the block (None: no folder); a folder the block created is removed again
    if the block is refused (UsageError) before writing anything into it."""
    created = path is not None and not os.path.exists(path)
    if path is not None:
        writable_dir(path)
    try:
        yield path
    except UsageError:
        if created and os.path.isdir(path) and not os.listdir(path):
            os.rmdir(path)
        raise


class RunDirectory:
    """A training run's files as one process of the run sees them: ``config.json``, ``metrics.jsonl`` and the
    checkpoint in ``out``. ``world`` is the process group (:func:`ppl_vae.parallel.world`): every rank reads,
    rank 0 alone writes, and each waits for the others where a write would overtake a read."""

    def __init__(self, out: str, world):
        self.out, self.world = out, world

    def path(self, name: str) -> str:
        return os.path.join(self.out, name)

    def start(self, config: dict) -> None:
        """Begin a new run here, with its configuration; refused where a run already is."""
        if os.path.exists(self.path(checkpoint.NAME)) or os.path.exists(self.path(METRICS)):
            raise UsageError(f"{self.out} already holds a run; continue it with --resume {self.out} "
                             f"or choose another --out.")
        self.world.barrier()  # every rank has looked before rank 0 writes
        if self.world.main:
            os.makedirs(self.out, exist_ok=True)
            write_json(self.path(CONFIG), config)

    def checkpoint(self, device) -> dict:
        return checkpoint.load(self.path(checkpoint.NAME), map_location=device)

    def metrics(self, epochs: int) -> list[dict]:
        """The metrics of the first ``epochs`` epochs (the checkpoint's), without any a killed run wrote later."""
        return [m for m in read_jsonl(self.path(METRICS)) if m["epoch"] <= epochs]

    def continue_from(self, history: list[dict]) -> None:
        """Resume here: a half-written checkpoint removed, and the metrics cut back to ``history``."""
        self.world.barrier()  # every rank has read the files before rank 0 rewrites them
        if self.world.main:
            checkpoint.remove_partial(self.out)
            write_jsonl(self.path(METRICS), history)

    def save(self, state: dict, streams: list | None = None) -> None:
        """Write the checkpoint atomically (rank 0): one file whatever the world size, rank 0's ``state`` with
        the other ranks' random ``streams`` beside it."""
        if self.world.main:
            checkpoint.save(self.path(checkpoint.NAME), {**state, "ranks_rng": streams[1:]} if streams else state)
