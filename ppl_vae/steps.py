"""The step form of a sequence program, as Pyro's ``SMCFilter`` takes it: an object with ``init(state, x)``
and ``step(state, x_t)``, each step a Pyro program over a batch of sequences that reads and writes
``state``. Before ``init``, ``state["lengths"]`` holds the sequences' lengths (None: all T steps); before
each step, ``state["t"]`` its index. Tensors in ``state`` lead with the particles' dimension where a
particle filter runs the steps; context that is not per particle (a guide's RNN run over the whole
sequence) goes in a nested dict, which resampling leaves alone. :func:`unroll` runs those steps as one whole-sequence program, so one step written once
serves the particle filter (:mod:`ppl_vae.inference.smc`) and every other bound. Imports only pyro,
torch and the errors, so models stand on it.
"""

from __future__ import annotations

import contextlib

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from ppl_vae.errors import UsageError


def alive_steps(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """bool [B, T]: the steps within each sequence's length (all of them without ``lengths``)."""
    if lengths is None:
        return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    if lengths.shape != x.shape[:1] or bool((lengths < 1).any() | (lengths > x.shape[1]).any()):
        raise UsageError(f"the sequences' lengths must be one per sequence and lie in 1 … {x.shape[1]} (the padded "
                         f"length T of x [B, T, ...]); got lengths of shape {tuple(lengths.shape)} from "
                         f"{int(lengths.min())} to {int(lengths.max())} for x of shape {tuple(x.shape)}.")
    return torch.arange(x.shape[1], device=x.device) < lengths.to(x.device)[:, None]


def unroll(stepper, x: torch.Tensor, lengths: torch.Tensor | None = None) -> None:
    """``stepper``'s steps run over the whole sequence x [B, T, ...] as one Pyro program, each step masked
    past each sequence's length and ``state["t"]`` set as the filter sets it: the whole-sequence model (or
    guide) whose particles the SMC bound resamples."""
    alive = alive_steps(x, lengths)
    state: dict = {"lengths": lengths}
    stepper.init(state, x)
    for t in pyro.markov(range(x.shape[1])):
        state["t"] = t
        # each step opens its plate of sequences anew; a trace holds one record of a plate's indices
        again = poutine.block(hide_fn=site_is_subsample) if t else contextlib.nullcontext()
        with poutine.mask(mask=alive[:, t]), again:
            stepper.step(state, x[:, t])
