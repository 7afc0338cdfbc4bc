"""Choosing the device a run computes on."""

from __future__ import annotations

import torch

from ppl_vae import parallel
from ppl_vae.errors import UsageError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name="auto") -> torch.device:
    """``auto``: CUDA when torch can use it, else the CPU; ``cuda`` without CUDA is an error. Under
    torchrun, ``cuda`` is the process's own GPU, ``cuda:LOCAL_RANK``."""
    if isinstance(name, torch.device):
        return name
    if name not in DEVICES and not name.startswith("cuda:"):
        raise UsageError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}.")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {name} was asked for but this machine has no CUDA device that torch "
                         f"can use; pass --device cpu (or auto).")
    if name == "cuda" and parallel.launched():  # under torchrun: this process's own GPU
        rank, count = parallel.local_rank(), torch.cuda.device_count()
        if rank >= count:
            raise UsageError(f"torchrun started process {rank} on this machine, which has {count} CUDA "
                             f"device(s); pass --nproc-per-node {count} or fewer.")
        torch.cuda.set_device(rank)
        return torch.device("cuda", rank)
    return torch.device(name)


def forked_rng(like: torch.Tensor):
    """``torch.random.fork_rng`` for the device of ``like``: the block's draws leave the random stream
    (CPU, and that CUDA device's) as it was."""
    return torch.random.fork_rng(devices=[like.device.index or 0] if like.is_cuda else [])
