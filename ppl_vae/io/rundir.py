"""The run directory: ``config.json``, ``metrics.jsonl``, ``checkpoint.pt``, figures, results.

JSON files are replaced atomically; ``metrics.jsonl`` gets one line per epoch, and a line
cut short by a killed process is ignored when read back.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import pyro
from torch import nn

from ppl_vae import registry

from ppl_vae.io import checkpoint
from ppl_vae.data import Dataset
from ppl_vae.device import resolve_device
from ppl_vae.errors import UsageError

CONFIG = "config.json"
METRICS = "metrics.jsonl"
# What `ppl-vae train` always writes and every command that rebuilds a run reads; newer keys
# are read with config.get(key, default), so older run directories still load.
CONFIG_KEYS = ("dataset", "data_dir", "binarize", "model", "guide", "latent_dim", "hidden", "activation",
               "likelihood", "objective", "particles", "epochs", "batch_size", "lr", "lr_milestones", "lr_gamma",
               "seed", "drop_last")


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


@dataclass
class Run:
    """A trained run, rebuilt from its directory: config, data, model and guide."""

    dir: str
    config: dict
    data: Dataset
    model: nn.Module
    guide: nn.Module
    epoch: int


def load_run(run_dir: str, device="auto") -> Run:
    """Rebuild the run in ``run_dir`` from config.json and load its checkpoint's parameters."""
    require_run(run_dir)
    config = read_config(run_dir)
    device = resolve_device(device)
    state = checkpoint.load(os.path.join(run_dir, checkpoint.NAME), map_location=device)
    data = registry.load_data(config, device)
    model, guide = registry.build(config, data)
    try:
        model.load_state_dict(state["modules"]["model"])
        guide.load_state_dict(state["modules"]["guide"])
    except (KeyError, RuntimeError):
        raise UsageError(f"the checkpoint in {run_dir} does not match its config.json; "
                         f"the run directory was altered, so train it again.") from None
    pyro.clear_param_store()
    return Run(run_dir, config, data, model.eval(), guide.eval(), state["epoch"])
