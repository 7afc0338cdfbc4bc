"""Sticking the landing: the ELBO's path-derivative gradient (Roeder, Wu & Duvenaud 2017)."""

from __future__ import annotations

from dataclasses import replace

from ppl_vae.inference.weights import elbo_bound
from ppl_vae.inference.objectives.base import AT_ANY_Z, Objective
from ppl_vae.inference.objectives.weighted import WeightedLoss


class STLLoss(WeightedLoss):
    """The ELBO, L(θ, φ) = E_q[log p_θ(x | z)] − KL(q_φ(z | x) ‖ p(z)), with K particles, and
    the reparameterized gradient with the score term dropped:

        ∇_φ L ≈ (1/K) Σ_k ∂ log w(z_k)/∂z · ∂z_k/∂φ,   z_k = z(ε_k, φ).

    The dropped term, E_q[∇_φ log q_φ(z)], is zero, so the estimator stays unbiased; when q is
    the exact posterior, log w = log p(x) for every z and the estimate is exactly zero. The
    model's gradient ∇_θ is the usual one.
    """

    name = "stl"

    needs = replace(WeightedLoss.needs, guide=AT_ANY_Z)  # log q at the particles, φ detached

    def bound(self, log_w):
        return elbo_bound(log_w)

    def surrogates(self, p):
        return [(self.bound(p.log_w_path()).sum(), "all")]


def stl(particles: int = 1) -> Objective:
    return Objective("stl", STLLoss(particles), particles, elbo_bound, recordable=True)
