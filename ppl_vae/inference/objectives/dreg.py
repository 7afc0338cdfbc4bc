"""The doubly-reparameterized IWAE gradient (Tucker, Lawson, Gu & Maddison 2019)."""

from __future__ import annotations

from dataclasses import replace

from ppl_vae.inference.weights import iwae_bound
from ppl_vae.inference.objectives.base import AT_ANY_Z, Objective
from ppl_vae.inference.objectives.weighted import WeightedLoss


class DReGLoss(WeightedLoss):
    """The IWAE bound L_K(x) = E[log (1/K) Σ_k w_k] with the doubly-reparameterized guide gradient

        ∇_φ L_K ≈ Σ_k w̃_k² · ∂ log w_k/∂z_k · ∂z_k/∂φ,   w̃_k = w_k / Σ_j w_j,

    which has the expectation of the IWAE gradient but not the score terms whose noise makes
    the IWAE guide gradient's signal-to-noise ratio fall as 1/√K (Rainforth et al. 2018). The
    model's gradient is IWAE's, Σ_k w̃_k ∇_θ log p_θ(x, z_k).
    """

    name = "dreg"
    # IWAE's θ estimator, DReG's φ estimator (stopped gradients through q: log q at a detached z)
    needs = replace(WeightedLoss.needs, guide=AT_ANY_Z, splits_roles=True)

    def bound(self, log_w):
        return iwae_bound(log_w)

    def surrogates(self, p):
        log_w = p.log_w_path()
        w = log_w.detach().softmax(0)  # normalized weights w̃ per data point
        return [(self.bound(log_w).sum(), "model"), ((w ** 2 * log_w).sum(), "guide")]


def dreg(particles: int = 1) -> Objective:
    return Objective("dreg", DReGLoss(particles), particles, iwae_bound, recordable=True)
