"""The evidence lower bound as an estimate of log p(x) (Kingma & Welling 2014).

    log p(x) ≥ L(θ, φ; x) = E_q[log p_θ(x, z) − log q_φ(z | x)]
                          = E_q[log p_θ(x | z)] − KL(q_φ(z | x) ‖ p(z)),

below log p(x) by KL(q_φ(z | x) ‖ p_θ(z | x)). It is estimated per point by the mean of log w
over K draws z_k ~ q_φ(z | x), an unbiased estimate of the bound itself (the same draws as
:mod:`~ppl_vae.evaluation.estimators.importance`, averaged before rather than after the log).
"""

from __future__ import annotations

import time

from ppl_vae.evaluation.estimators.importance import NEEDS, scored_draws
from ppl_vae.evaluation.estimators.target import result
from ppl_vae.evaluation.evaluate import mc_se

__all__ = ["NEEDS", "elbo"]


def elbo(model, guide, x, *, particles: int = 5000, inputs: dict | None = None, max_plate_nesting: int = 1,
         max_elements: int | None = None, progress: bool = False) -> dict:
    """The ELBO per point of ``x`` from K = ``particles`` draws of the guide, in nats."""
    start = time.perf_counter()
    found = scored_draws("elbo", model, guide, x, particles, inputs, max_plate_nesting, max_elements)
    return result("elbo", "lower bound", found.elbo, time.perf_counter() - start, particles=particles,
                  mc_se=mc_se(found.elbo_var))
