"""Importance sampling with the guide as proposal (Burda, Grosse & Salakhutdinov 2016, appendix).

With K particles z_k ~ q_φ(z | x) per point and w_k = p_θ(x, z_k) / q_φ(z_k | x),

    log p(x) ≈ log p̂_K(x) = log (1/K) Σ_k w_k,

a stochastic lower bound: E[log p̂_K(x)] ≤ log E[p̂_K(x)] = log p(x) (Jensen), rising to log p(x)
as K grows, with a gap ≈ Var(w) / (2 K p(x)²) for large K. The weights are those of
:func:`ppl_vae.evaluation.evaluate.per_point`, drawn in chunks and combined by a running
log-sum-exp; unlike :func:`~ppl_vae.evaluation.evaluate.evaluate`, this never takes a model's
closed-form ``log_marginal`` instead.
"""

from __future__ import annotations

import time

import torch

from ppl_vae.data import split
from ppl_vae.evaluation.evaluate import Draws, draws, mc_se
from ppl_vae.inference.chunks import chunk_sizes, max_elements_for
from ppl_vae.evaluation.estimators.target import latent_space, result
from ppl_vae.pair import callables
from ppl_vae.inference.weights import log_weights


NEEDS = ("density",)  # what latent_space checks: q can be sampled and scored


def scored_draws(estimator: str, model, guide, x, particles: int, inputs: dict | None, max_plate_nesting: int,
                 max_elements: int | None) -> Draws:
    """ELBO and log p̂_K per point from the same K draws of q, with their Monte Carlo variances
    (:func:`~ppl_vae.evaluation.evaluate.draws`), after refusing what ``estimator`` cannot do."""
    model, guide = callables(model, guide)
    latent_space(model, guide, x, inputs, estimator=estimator, needs=NEEDS)
    return draws(model, guide, x, particles, max_plate_nesting=max_plate_nesting, max_elements=max_elements,
                 inputs=inputs)


def importance(model, guide, x, *, particles: int = 5000, inputs: dict | None = None, max_plate_nesting: int = 1,
               max_elements: int | None = None, progress: bool = False) -> dict:
    """log p̂_K(x) per point of ``x`` with K = ``particles`` draws from the guide, in nats."""
    start = time.perf_counter()
    found = scored_draws("is", model, guide, x, particles, inputs, max_plate_nesting, max_elements)
    return result("is", "stochastic lower bound", found.log_px, time.perf_counter() - start, particles=particles,
                  mc_se=mc_se(found.log_px_var))


@torch.no_grad()
def log_weight_batches(model, guide, x, particles: int, *, inputs: dict | None = None, max_plate_nesting: int = 1,
                       max_elements: int | None = None):
    """(log w [K, n]) for consecutive batches of points, K = ``particles`` draws each, drawn in chunks of
    particles × points × data dims within ``max_elements``."""
    model, guide = callables(model, guide)
    batch, k_chunk = chunk_sizes(x.shape[0], x[0].numel(), particles, max_elements or max_elements_for(x.device))
    for xb, ib in split(x, inputs, batch):
        yield torch.cat([log_weights(model, guide, xb, particles=min(k_chunk, particles - lo),
                                     max_plate_nesting=max_plate_nesting, **ib)
                         for lo in range(0, particles, k_chunk)])
