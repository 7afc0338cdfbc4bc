"""What the reproduction scripts share: their common options, and resumable training in this process.

Each script runs ``ppl-vae`` in the script's process (so SIGINT/SIGTERM reach the trainer, which checkpoints
and exits 130/143); running the same command again continues where it stopped.
"""

from __future__ import annotations

import argparse
import os
import sys


def parser(doc: str, name: str, scale_help: str) -> argparse.ArgumentParser:
    """The options every script takes; ``name`` sets the default --workdir and --out."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0, help=scale_help)
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=f"runs/reproduce/{name}", help="the run directories")
    p.add_argument("--out", default=f"benchmarks/reproduce/{name}", help="the tables and figures")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def command() -> str:
    """The command line that ran this script, as the tables name it."""
    return f"python scripts/reproduce/{os.path.basename(sys.argv[0])} " + " ".join(sys.argv[1:])


def machine() -> str:
    """The machine that ran this script, as the tables name it."""
    import torch

    where = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU with {os.cpu_count()} cores"
    return f"{where}, torch {torch.__version__}"


def cli(argv: list[str]) -> int:
    """``ppl-vae argv`` in this process; a non-zero exit code is reported with how to continue."""
    from ppl_vae.cli import main

    code = main(argv)
    if code:
        print(f"{os.path.basename(sys.argv[0])}: `ppl-vae {' '.join(argv[:3])} ...` exited with {code}; run the "
              f"same command again to continue.", file=sys.stderr)
    return code


def seconds_per_epoch(run: str) -> float:
    """The median of the run's epoch times (metrics.jsonl), for the tables' cost statements."""
    from ppl_vae.io.rundir import read_jsonl

    seconds = sorted(m["seconds"] for m in read_jsonl(os.path.join(run, "metrics.jsonl")))
    return seconds[len(seconds) // 2]


def keep(store: str, cells: dict) -> None:
    """Write the measurements so far to ``store`` (JSON) at once and atomically: an interrupted script keeps them."""
    import json

    os.makedirs(os.path.dirname(store) or ".", exist_ok=True)
    with open(store + ".tmp", "w") as f:
        json.dump(cells, f, indent=2)
    os.replace(store + ".tmp", store)


def write_table(out: str, title: str, setup: str, table: list[str], after: str, also: str = "") -> None:
    """Write ``out``/table.md: ``title``, the command and machine that made it, ``setup``, the ``table``'s lines
    and ``after`` (what the paper reports beside them); print it from the setup on."""
    os.makedirs(out, exist_ok=True)
    lines = [f"# {title}", "", f"`{command()}` ({machine()})", "", setup, "", *table, "", after]
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines[4:]))
    print(f"wrote table.md{also} to {out}")


CHECKED = ("dataset", "seed", "preset", "guide", "objective", "particles")  # the options a run's name does not say


def train_to(run: str, epochs: int, fresh: list[str], progress: bool) -> int:
    """Train the run at ``run`` to ``epochs`` epochs: ``ppl-vae train --out run *fresh`` the first time,
    ``--resume`` after an interruption, nothing once it is there. Returns the exit code; 2, with one
    sentence, when the run there was started with other options (another --seed or --dataset), whose
    numbers would otherwise be reported under this command."""
    import json

    from ppl_vae.io import checkpoint

    path = os.path.join(run, checkpoint.NAME)
    if os.path.exists(path):
        recorded = json.load(open(os.path.join(run, "config.json")))
        asked = dict(zip(fresh[::2], fresh[1::2]))  # fresh holds option-value pairs
        for key in CHECKED:
            if f"--{key}" in asked and key in recorded and str(recorded[key]) != asked[f"--{key}"]:
                print(f"{os.path.basename(sys.argv[0])}: {run} was started with --{key} {recorded[key]}, not "
                      f"{asked[f'--{key}']}; give this command another --workdir.", file=sys.stderr)
                return 2
        if checkpoint.load(path)["epoch"] >= epochs:
            return 0
    where = ["--resume", run] if os.path.exists(path) else ["--out", run, *fresh]
    return cli(["train", *where, "--epochs", str(epochs), *([] if progress else ["--no-progress"])])
