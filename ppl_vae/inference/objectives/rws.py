"""Reweighted wake-sleep with wake-φ updates (Bornschein & Bengio 2015)."""

from __future__ import annotations

from dataclasses import replace

from ppl_vae.inference.weights import iwae_bound
from ppl_vae.inference.objectives.base import AT_ANY_Z, Objective
from ppl_vae.inference.objectives.weighted import WeightedLoss


class RWSLoss(WeightedLoss):
    """Reweighted wake-sleep: θ ascends the IWAE bound, φ follows the wake-φ gradient,

        ∇_θ ≈ Σ_k w̃_k ∇_θ log p_θ(x, z_k),      ∇_φ ≈ Σ_k w̃_k ∇_φ log q_φ(z_k | x),

    with z_k ~ q_φ(z | x) held fixed and w̃_k = w_k / Σ_j w_j normalized per data point. The
    wake-φ update is a self-normalized importance-sampled estimate of −∇_φ KL(p(z | x) ‖ q_φ(z | x)),
    so φ needs no reparameterization and discrete latents work. The weights are normalized
    within each data point's K particles, so mini-batches are fine (Pyro's
    ``ReweightedWakeSleep`` normalizes over the whole batch). Sleep-phase updates are not used
    (Le et al. 2019 found wake-φ alone works better). The reported bound is IWAE's.
    """

    name = "rws"
    needs = replace(WeightedLoss.needs, guide=AT_ANY_Z, reparameterized=False, splits_roles=True)  # wake-θ, wake-φ

    def bound(self, log_w):
        return iwae_bound(log_w)

    def surrogates(self, p):
        w = p.log_w.detach().softmax(0)
        return [(self.bound(p.log_w).sum(), "model"), ((w * p.log_q_stopped()).sum(), "guide")]


def rws(particles: int = 1) -> Objective:
    return Objective("rws", RWSLoss(particles), particles, iwae_bound, recordable=True)
