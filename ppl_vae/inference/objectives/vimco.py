"""Variational inference for Monte Carlo objectives (VIMCO; Mnih & Rezende 2016)."""

from __future__ import annotations

from dataclasses import replace

import math

import torch

from ppl_vae.errors import UsageError
from ppl_vae.inference.objectives.base import AT_ANY_Z, Objective
from ppl_vae.inference.objectives.weighted import WeightedLoss
from ppl_vae.inference.weights import iwae_bound


def leave_one_out(log_w: torch.Tensor) -> torch.Tensor:
    """L̂_{−k} [K, N]: log (1/K) Σ_j w_j with w_k replaced by the geometric mean of the other K − 1 weights."""
    k = log_w.shape[0]
    others = (log_w.sum(0, keepdim=True) - log_w) / (k - 1)               # log of the others' geometric mean
    replaced = log_w.unsqueeze(0).expand(k, *log_w.shape).clone()         # [k (left out), K, N]
    index = torch.arange(k, device=log_w.device)
    replaced[index, index] = others
    return torch.logsumexp(replaced, 1) - math.log(k)


class VIMCOLoss(WeightedLoss):
    """The IWAE bound L_K with VIMCO's gradient, for any guide, discrete or continuous:

        L̂ = log (1/K) Σ_k w_k,   w_k = p_θ(x, z_k) / q_φ(z_k | x),   z_k ~ q_φ(z | x) held fixed,
        ∇_θ L̂ = Σ_k w̃_k ∇_θ log p_θ(x, z_k),
        ∇_φ L̂ = Σ_k (L̂ − L̂_{−k}) ∇_φ log q_φ(z_k | x) − Σ_k w̃_k ∇_φ log q_φ(z_k | x),

    w̃_k = w_k / Σ_j w_j, and L̂_{−k} the same bound with w_k replaced by the geometric mean of the
    other weights: a baseline for particle k that does not depend on z_k, so the score-function
    term stays unbiased while each particle's learning signal is its own contribution to L̂. No
    reparameterization is used; K ≥ 2. The reported bound is IWAE's.
    """

    name = "vimco"
    # θ by the weights, φ by the leave-one-out score function
    needs = replace(WeightedLoss.needs, guide=AT_ANY_Z, reparameterized=False, splits_roles=True)

    def bound(self, log_w):
        return iwae_bound(log_w)

    def surrogates(self, p):
        log_w = p.log_w.detach()
        signal = iwae_bound(log_w).unsqueeze(0) - leave_one_out(log_w) - log_w.softmax(0)
        return [(self.bound(p.log_w).sum(), "model"), ((signal * p.log_q_stopped()).sum(), "guide")]


def vimco(particles: int = 2) -> Objective:
    if particles < 2:
        raise UsageError(f"vimco's baseline for each particle is built from the other particles, so it needs "
                         f"--particles 2 or more, got {particles}.")
    return Objective("vimco", VIMCOLoss(particles), particles, iwae_bound, recordable=True)
