"""The perturbative lower bound of order K (Bamler, Zhang, Opper & Mandt 2017, "Perturbative Black
Box Variational Inference", NeurIPS).

For odd K the Taylor polynomial P_K(y) = Σ_{k=0}^{K} y^k / k! lies below e^y for every real y
(the remainder e^ξ y^{K+1} / (K+1)! is ≥ 0, K + 1 being even). With log w = log p_θ(x, z) −
log q_φ(z | x) and any reference V₀, p(x) = E_q[w] = e^{V₀} E_q[e^{log w − V₀}], so

    p(x) ≥ L^(K)(V₀) = e^{V₀} E_q[P_K(log w − V₀)],   log p(x) ≥ V₀ + log E_q[P_K(log w − V₀)].

K = 1 gives e^{V₀}(1 + E_q[log w] − V₀), largest at V₀ = E_q[log w]: the ELBO. Higher odd K
trade bias for variance: the bound follows E_q[e^{log w}] to order K in the fluctuations of
log w around V₀, where the ELBO keeps only their mean.

The reference chosen here is the one that maximizes the bound, per point: ∂L^(K)/∂V₀ =
e^{V₀} E_q[(log w − V₀)^K] / K!, which decreases through zero once, so V₀* solves
E_q[(log w − V₀)^K] = 0 (found by bisection between the smallest and the largest log w). There
E_q[P_K(log w − V₀*)] = E_q[P_{K−1}(log w − V₀*)] > 0 (an even-degree P is positive), so the
log is always defined. For K = 3, V₀* − E_q[log w] is the real root u of m₃ − 3 u m₂ − u³ = 0
(m_k the central moments of log w): above the mean when log w is skewed to the right.

Estimated from S draws of q, with every E_q replaced by the mean over the draws: for every V₀
that estimate is at most log (1/S) Σ_s w_s (since P_K ≤ exp, draw by draw), the importance-
sampled estimate from the same draws, whose expectation is at most log p(x). So the number is a
stochastic lower bound on log p(x), for any odd K. It is not guaranteed to exceed the ELBO: P_3
lies below P_1 where log w − V₀ < −3, so a heavy left tail of log w (a q much wider than the
posterior) can pull it below.
"""

from __future__ import annotations

import time

import torch

from ppl_vae.errors import UsageError
from ppl_vae.evaluation.estimators.importance import log_weight_batches
from ppl_vae.evaluation.estimators.target import latent_space, result


NEEDS = ("density",)  # what latent_space checks: q can be sampled and scored


def perturbative_bound(log_w: torch.Tensor, order: int = 3, iterations: int = 100):
    """(bound [n], V₀* [n]) from log weights [S, n], in float64: the perturbative bound of odd ``order``
    with the reference V₀* that maximizes it (see the module docstring)."""
    if order < 1 or order % 2 == 0:
        raise UsageError(f"the perturbative bound needs an odd order K ≥ 1 (K = 1 is the ELBO, 3 the usual "
                         f"choice), got {order}.")
    log_w = log_w.double()
    mean = log_w.mean(0)
    y = log_w - mean  # centred: the powers stay moderate
    lo, hi = y.min(0).values, y.max(0).values
    for _ in range(iterations):  # E[(y − u)^K] decreases in u, ≥ 0 at u = min y and ≤ 0 at u = max y
        mid = 0.5 * (lo + hi)
        positive = (y - mid).pow(order).mean(0) > 0
        lo, hi = torch.where(positive, mid, lo), torch.where(positive, hi, mid)
    u = 0.5 * (lo + hi)
    t = y - u
    term = series = torch.ones_like(t)
    for k in range(1, order + 1):  # Σ_k t^k / k!, each term from the one before
        term = term * t / k
        series = series + term
    return mean + u + series.mean(0).log(), mean + u


def perturbative(model, guide, x, *, order: int = 3, particles: int = 5000, inputs: dict | None = None,
                 max_plate_nesting: int = 1, max_elements: int | None = None, progress: bool = False) -> dict:
    """The perturbative bound of odd ``order`` per point of ``x`` from S = ``particles`` draws of the guide,
    in nats; ``v0`` is the mean over points of the reference V₀*, ``v0_above_elbo`` that of V₀* − E_q[log w]."""
    start = time.perf_counter()
    perturbative_bound(torch.zeros(1, 1), order)  # refuses an even order before any work
    latent_space(model, guide, x, inputs, estimator="perturbative", needs=NEEDS)
    bounds, refs, shifts = [], [], []
    for log_w in log_weight_batches(model, guide, x, particles, inputs=inputs, max_plate_nesting=max_plate_nesting,
                                    max_elements=max_elements):
        bound, v0 = perturbative_bound(log_w, order)
        bounds.append(bound)
        refs.append(v0)
        shifts.append(v0 - log_w.double().mean(0))
    refs, shifts = torch.cat(refs), torch.cat(shifts)
    return result("perturbative", "stochastic lower bound", torch.cat(bounds).to(x.dtype), time.perf_counter() - start,
                  order=order, particles=particles, v0=refs.mean().item(), v0_above_elbo=shifts.mean().item())
