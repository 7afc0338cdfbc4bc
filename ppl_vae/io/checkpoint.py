"""Checkpoints: written atomically, read back as tensors and plain data only.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts, saved with
``torch.save`` to a temporary file in the run directory, flushed to disk and renamed over
``checkpoint.pt``; a run killed mid-write leaves the previous checkpoint intact. It is read
with ``torch.load(weights_only=True)``, which refuses arbitrary pickled objects, so opening a
checkpoint from someone else cannot run their code.
"""

from __future__ import annotations

import os
import random
import tempfile

import numpy as np
import torch

from ppl_vae.errors import UsageError

FORMAT = "ppl-vae-checkpoint"
VERSION = 1
NAME = "checkpoint.pt"
TEMPORARY = (".checkpoint-", ".tmp")  # prefix and suffix of a checkpoint being written


def save(path, state: dict) -> None:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename)."""
    state = {"format": FORMAT, "version": VERSION, **state}
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=TEMPORARY[0], suffix=TEMPORARY[1], dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def remove_partial(folder) -> None:
    """Delete the temporary files of saves that a SIGKILL cut short (the checkpoint itself is whole)."""
    for name in os.listdir(folder):
        if name.startswith(TEMPORARY[0]) and name.endswith(TEMPORARY[1]):
            os.unlink(os.path.join(folder, name))


def load(path, map_location="cpu") -> dict:
    """Read a checkpoint written by :func:`save`; anything else is a :class:`UsageError`."""
    if not os.path.isfile(path):
        raise UsageError(f"no checkpoint at {path}; train first with `ppl-vae train --out {os.path.dirname(path)}`.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated file, foreign pickle, not a torch file at all
        raise UsageError(f"{path} is corrupt or not a ppl-vae checkpoint ({type(e).__name__}); "
                         f"restore it from a copy or train the run again.") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UsageError(f"{path} is not a ppl-vae checkpoint; pass the run directory that `ppl-vae train` wrote.")
    if state.get("version") != VERSION:
        raise UsageError(f"{path} has checkpoint version {state.get('version')}, but this ppl-vae reads "
                         f"version {VERSION}; evaluate it with the ppl-vae release that wrote it.")
    return state


def rng_state() -> dict:
    """The global RNG states (torch, CUDA, Python, NumPy) as tensors and plain data."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(tuple(tuple(s) if isinstance(s, list) else s for s in state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
