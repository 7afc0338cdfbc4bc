"""Training objectives by name: each is a loss that ``pyro.infer.SVI`` accepts, plus its bound.

An :class:`Objective` pairs the Pyro loss that SVI minimizes with the bound it estimates,
written as a function of per-data-point log importance weights (see :mod:`ppl_vae.inference.weights`),
so that training curves and evaluations of every objective are reported the same way:
as log-likelihood bounds in nats per data point. One module per estimator family.
"""

from __future__ import annotations

import functools
import inspect
from typing import Callable

from ppl_vae.errors import UsageError
from ppl_vae.inference.objectives.base import GUIDE_CAPABILITIES, Needs, Objective
from ppl_vae.inference.objectives.analytic import elbo_analytic
from ppl_vae.inference.objectives.concrete import concrete, concrete_st
from ppl_vae.inference.objectives.disarm import arm, disarm
from ppl_vae.inference.objectives.dreg import dreg
from ppl_vae.inference.objectives.elbo import elbo
from ppl_vae.inference.objectives.enum import enum
from ppl_vae.inference.objectives.fivo import fivo
from ppl_vae.inference.objectives.iwae import iwae
from ppl_vae.inference.objectives.mmd import mmd
from ppl_vae.inference.objectives.relax import relax
from ppl_vae.inference.objectives.renyi import renyi
from ppl_vae.inference.objectives.rws import rws
from ppl_vae.inference.objectives.score import score, score_avg, score_nn
from ppl_vae.inference.objectives.stl import stl
from ppl_vae.inference.objectives.vimco import vimco

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
    "vimco": vimco,
    "disarm": disarm,
    "arm": arm,
    "relax": relax,
    "concrete": concrete,
    "concrete-st": concrete_st,
    "fivo": fivo,
    "enum": enum,
    "mmd": mmd,
}
# The inference methods for continuous latents that `ppl-vae compare` runs by default, each a bound on
# log p(x); `enum` sums discrete latents out exactly and is the Gaussian mixture's objective, `mmd`
# is not a bound (it compares the aggregate posterior with the prior), and `vimco`, the score function
# of the IWAE bound, `disarm` / `arm` and `relax`, for Bernoulli latents, and the Concrete relaxations are for
# discrete latents (`--objectives vimco,disarm,concrete` runs them); `fivo`, the particle filter's bound, is
# for sequence models written in step form.
COMPARED = tuple(name for name in OBJECTIVES
                 if name not in ("enum", "mmd", "vimco", "disarm", "arm", "relax", "concrete", "concrete-st", "fivo"))


@functools.cache
def declared(name: str) -> Objective:
    """The objective called ``name`` with its defaults: what it declares (``needs``, ``test_quantity``, ...)."""
    return OBJECTIVES[name]()


def offering(accepts: Callable[[Needs], bool]) -> tuple[str, ...]:
    """The objectives whose declared needs ``accepts`` takes, in :data:`OBJECTIVES`' order."""
    return tuple(name for name in OBJECTIVES if accepts(declared(name).needs))


def options_of(name: str) -> tuple[str, ...]:
    """The options an objective's factory takes besides ``particles`` (e.g. Rényi's ``alpha``)."""
    params = inspect.signature(OBJECTIVES[name]).parameters.values()
    return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY)


def make(name: str, particles: int = 1, **options) -> Objective:
    """The objective called ``name``; ``options`` are the objective's own (see :func:`options_of`)."""
    if name not in OBJECTIVES:
        raise UsageError(f"unknown objective {name!r}; choose one of {', '.join(OBJECTIVES)}.")
    if particles < 1:
        raise UsageError(f"--particles must be at least 1, got {particles}.")
    taken = options_of(name)
    for option in options:
        if option not in taken:
            flag = "--" + option.replace("_", "-")
            raise UsageError(f"the {name} objective takes no option {flag}"
                             + (f" (it takes {', '.join('--' + t.replace('_', '-') for t in taken)})" if taken else "")
                             + f"; drop {flag}.")
    return OBJECTIVES[name](particles=particles, **options)


__all__ = ["COMPARED", "GUIDE_CAPABILITIES", "OBJECTIVES", "Needs", "Objective", "declared", "make", "offering",
           "options_of"]
