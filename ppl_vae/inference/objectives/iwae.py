"""The importance-weighted autoencoder bound (Burda, Grosse & Salakhutdinov 2016)."""

from __future__ import annotations

from ppl_vae.inference.weights import iwae_bound
from ppl_vae.inference.objectives.base import Objective
from ppl_vae.inference.objectives.weighted import WeightedLoss


class IWAELoss(WeightedLoss):
    """The IWAE bound per data point, differentiated through the reparameterized particles:

        L_K(x) = E_{z_1..K ~ q_φ(z | x)} [ log (1/K) Σ_k w_k ],   w_k = p_θ(x, z_k) / q_φ(z_k | x),

    log p(x) ≥ L_K ≥ L_1 = ELBO, non-decreasing in K. The log-sum-exp runs over the K particles
    of each data point separately, inside the data plate; Pyro's ``RenyiELBO(alpha=0)`` instead
    sums log w over the plate first, which is the bound of the whole batch as one data point
    (pyro issues #2220, #3104), a looser bound whenever the batch has more than one point.
    The gradient is Σ_k w̃_k ∇ log w_k with normalized weights w̃_k = w_k / Σ_j w_j.
    """

    name = "iwae"

    def bound(self, log_w):
        return iwae_bound(log_w)

    def surrogates(self, p):
        return [(self.bound(p.log_w).sum(), "all")]


def iwae(particles: int = 1) -> Objective:
    return Objective("iwae", IWAELoss(particles), particles, iwae_bound, recordable=True)
