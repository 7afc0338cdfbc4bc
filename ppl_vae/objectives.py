"""Training objectives by name: each is a loss that ``pyro.infer.SVI`` accepts, plus its bound.

An :class:`Objective` pairs the Pyro loss that SVI minimizes with the bound it estimates,
written as a function of per-data-point log importance weights (see :mod:`ppl_vae.weights`),
so that training curves and evaluations of every objective are reported the same way:
as log-likelihood bounds in nats per data point.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import torch
from pyro.infer import JitTrace_ELBO, Trace_ELBO

from .errors import UsageError
from .weights import elbo_bound


def _same_lr(param_name: str) -> float:
    return 1.0


@dataclass
class Objective:
    """A Pyro loss for SVI and the bound it estimates.

    ``loss.loss_and_grads`` (what ``SVI.step`` calls) returns −Σ_n bound(x_n) over the
    mini-batch, so the trainer reports −loss / batch size as the training bound.
    ``lr_factor(param_name)`` scales the learning rate of a parameter, e.g. a learned
    baseline that trains on its own rate.
    """

    name: str
    loss: object  # a pyro.infer.ELBO, or any object with loss / loss_and_grads as SVI expects
    particles: int  # particles per data point, in training and in the test bound
    bound: Callable[[torch.Tensor], torch.Tensor]  # log w [K, N] -> bound per data point [N]
    lr_factor: Callable[[str], float] = _same_lr


def elbo(particles: int = 1, jit: bool = False, **_) -> Objective:
    """The reparameterized ELBO (Kingma & Welling 2014), Pyro's ``Trace_ELBO``:

        L(θ, φ) = E_q[log p_θ(x | z)] − KL(q_φ(z | x) ‖ p(z)),

    estimated with K particles z_k = μ_φ(x) + σ_φ(x) ⊙ ε_k, averaged, and differentiated
    through the sample path. ``jit`` uses ``JitTrace_ELBO`` (static shapes only).
    """
    if jit:
        warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")
    kwargs = dict(num_particles=particles, vectorize_particles=particles > 1, max_plate_nesting=1)
    loss = JitTrace_ELBO(ignore_jit_warnings=True, **kwargs) if jit else Trace_ELBO(**kwargs)
    return Objective("elbo", loss, particles, elbo_bound)


OBJECTIVES: dict[str, Callable[..., Objective]] = {
    "elbo": elbo,
}


def make(name: str, particles: int = 1, **options) -> Objective:
    """The objective called ``name``; ``options`` are the objective's own (e.g. ``jit``)."""
    if name not in OBJECTIVES:
        raise UsageError(f"unknown objective {name!r}; choose one of {', '.join(OBJECTIVES)}.")
    if particles < 1:
        raise UsageError(f"--particles must be at least 1, got {particles}.")
    return OBJECTIVES[name](particles=particles, **options)
