"""Training objectives by name: each is a loss that ``pyro.infer.SVI`` accepts, plus its bound.

An :class:`Objective` pairs the Pyro loss that SVI minimizes with the bound it estimates,
written as a function of per-data-point log importance weights (see :mod:`ppl_vae.weights`),
so that training curves and evaluations of every objective are reported the same way:
as log-likelihood bounds in nats per data point. One module per estimator family.
"""

from __future__ import annotations

from typing import Callable

from ..errors import UsageError
from .base import Objective
from .elbo import elbo
from .enum import enum

OBJECTIVES: dict[str, Callable[..., Objective]] = {
    "elbo": elbo,
    "enum": enum,
}


def make(name: str, particles: int = 1, **options) -> Objective:
    """The objective called ``name``; ``options`` are the objective's own (e.g. ``jit``)."""
    if name not in OBJECTIVES:
        raise UsageError(f"unknown objective {name!r}; choose one of {', '.join(OBJECTIVES)}.")
    if particles < 1:
        raise UsageError(f"--particles must be at least 1, got {particles}.")
    return OBJECTIVES[name](particles=particles, **options)


__all__ = ["OBJECTIVES", "Objective", "make"]
