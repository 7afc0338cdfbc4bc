"""The variational Rényi (VR-α) bound (Li & Turner 2016)."""

from __future__ import annotations

import math
from functools import partial

import torch

from ppl_vae.errors import UsageError
from ppl_vae.inference.objectives.base import Objective
from ppl_vae.config import default
from ppl_vae.inference.objectives.weighted import WeightedLoss


def renyi_bound(log_w: torch.Tensor, alpha: float) -> torch.Tensor:
    """The K-sample VR-α bound per data point: 1/(1−α) · log (1/K) Σ_k w_k^(1−α)."""
    return (torch.logsumexp((1 - alpha) * log_w, 0) - math.log(log_w.shape[0])) / (1 - alpha)


class RenyiLoss(WeightedLoss):
    """The VR-α bound per data point, differentiated through the reparameterized particles:

        L_α(x) = 1/(1−α) log E_q[ (p_θ(x, z) / q_φ(z | x))^(1−α) ] = log p(x) − D_α(q ‖ p(z | x)),

    estimated by L̂_{α,K} = 1/(1−α) log (1/K) Σ_k w_k^(1−α). α → 1 gives the ELBO, α = 0 the
    IWAE bound; for 0 ≤ α < 1, E[L̂_{α,K}] ≤ log p(x) and rises with K toward L_α. α < 0 gives
    bounds above L_α that are no longer lower bounds on log p(x). The gradient is
    Σ_k ŵ_k ∇ log w_k with ŵ_k ∝ w_k^(1−α).
    """

    name = "renyi"

    def __init__(self, particles: int, alpha: float, **kwargs):
        super().__init__(particles, **kwargs)
        self.alpha = alpha

    def bound(self, log_w):
        return renyi_bound(log_w, self.alpha)

    def surrogates(self, p):
        return [(self.bound(p.log_w).sum(), "all")]


def renyi(particles: int = 1, *, alpha: float = default("alpha")) -> Objective:
    if alpha == 1 or not math.isfinite(alpha):
        raise UsageError(f"--alpha must be a finite number other than 1 (α = 1 is the ELBO: use --objective "
                         f"elbo), got {alpha}.")
    return Objective("renyi", RenyiLoss(particles, alpha), particles, partial(renyi_bound, alpha=alpha), recordable=True)
