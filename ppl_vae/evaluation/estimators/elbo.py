"""The evidence lower bound as an estimate of log p(x) (Kingma & Welling 2014).

    log p(x) ≥ L(θ, φ; x) = E_q[log p_θ(x, z) − log q_φ(z | x)]
                          = E_q[log p_θ(x | z)] − KL(q_φ(z | x) ‖ p(z)),

below log p(x) by KL(q_φ(z | x) ‖ p_θ(z | x)). It is estimated per point by the mean of log w
over K draws z_k ~ q_φ(z | x), an unbiased estimate of the bound itself (the same draws as
:mod:`~ppl_vae.evaluation.estimators.importance`, averaged before rather than after the log).
"""

from __future__ import annotations

import time

from ppl_vae.evaluation.evaluate import per_point
from ppl_vae.evaluation.estimators.target import latent_space, result
from ppl_vae.pair import callables


NEEDS = ("density",)  # what latent_space checks: q can be sampled and scored


def elbo(model, guide, x, *, particles: int = 5000, inputs: dict | None = None, max_plate_nesting: int = 1,
         max_elements: int | None = None, progress: bool = False) -> dict:
    """The ELBO per point of ``x`` from K = ``particles`` draws of the guide, in nats."""
    start = time.perf_counter()
    model, guide = callables(model, guide)
    latent_space(model, guide, x, inputs, estimator="elbo", needs=NEEDS)
    bound, _ = per_point(model, guide, x, particles, max_plate_nesting=max_plate_nesting,
                         max_elements=max_elements, inputs=inputs)
    return result("elbo", "lower bound", bound, time.perf_counter() - start, particles=particles)
