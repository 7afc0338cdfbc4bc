"""Training objectives by name: each is a loss that ``pyro.infer.SVI`` accepts, plus its bound.

An :class:`Objective` pairs the Pyro loss that SVI minimizes with the bound it estimates,
written as a function of per-data-point log importance weights (see :mod:`ppl_vae.inference.weights`),
so that training curves and evaluations of every objective are reported the same way:
as log-likelihood bounds in nats per data point. One module per estimator family.
"""

from __future__ import annotations

from typing import Callable

from ppl_vae.errors import UsageError
from ppl_vae.inference.objectives.base import Objective
from ppl_vae.inference.objectives.analytic import elbo_analytic
from ppl_vae.inference.objectives.dreg import dreg
from ppl_vae.inference.objectives.elbo import elbo
from ppl_vae.inference.objectives.enum import enum
from ppl_vae.inference.objectives.iwae import iwae
from ppl_vae.inference.objectives.renyi import renyi
from ppl_vae.inference.objectives.rws import rws
from ppl_vae.inference.objectives.score import score, score_avg, score_nn
from ppl_vae.inference.objectives.stl import stl

OBJECTIVES: dict[str, Callable[..., Objective]] = {
    "elbo": elbo,
    "elbo-analytic": elbo_analytic,
    "score": score,
    "score-avg": score_avg,
    "score-nn": score_nn,
    "iwae": iwae,
    "renyi": renyi,
    "rws": rws,
    "stl": stl,
    "dreg": dreg,
    "enum": enum,
}
# The inference methods for continuous latents that `ppl-vae compare` runs by default; `enum`
# sums discrete latents out exactly and is the Gaussian mixture's objective.
COMPARED = tuple(name for name in OBJECTIVES if name != "enum")
JIT = ("elbo", "elbo-analytic")  # the objectives with a JIT-compiled Pyro loss
# Options of particular objectives, with their defaults: Rényi's α; the score-function
# baselines' decay β and the learned baseline's learning-rate factor.
DEFAULTS = {"alpha": 0.5, "baseline_beta": 0.9, "baseline_lr_factor": 10.0}


def make(name: str, particles: int = 1, **options) -> Objective:
    """The objective called ``name``; ``options`` are the objective's own (e.g. ``jit``)."""
    if name not in OBJECTIVES:
        raise UsageError(f"unknown objective {name!r}; choose one of {', '.join(OBJECTIVES)}.")
    if particles < 1:
        raise UsageError(f"--particles must be at least 1, got {particles}.")
    if options.get("jit") and name not in JIT:
        raise UsageError(f"--jit is available for {' and '.join(JIT)} only, not {name}; drop --jit.")
    return OBJECTIVES[name](particles=particles, **{**DEFAULTS, **options})


__all__ = ["DEFAULTS", "OBJECTIVES", "Objective", "make"]
