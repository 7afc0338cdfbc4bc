"""The approximation and amortization gaps of an encoder (Cremer, Li & Duvenaud 2018).

For a test point x, the encoder's q_φ(z | x), and q*_x the member of the same family that
maximizes the ELBO of x alone, the gap between log p(x) and the encoder's bound splits as

    log p(x) − L[q] = (log p(x) − L[q*])  +  (L[q*] − L[q])
                       approximation gap      amortization gap

The approximation gap is what the family (diagonal Gaussian) cannot express of p(z | x);
the amortization gap is what one network shared by all x loses against a q fitted to each.

q* is found per test point by :meth:`guides.local.LocalGaussian.refine`: a table of
(m_x, s_x) started at the encoder's output and moved by Adam on the ELBO with θ fixed until
the mean bound stops rising. L[q] and L[q*] are then ELBOs estimated with K particles, and
log p(x) the importance-sampled log p̂_K(x) (K = 5000 by default) with the defensive mixture
½ q + ½ q* as proposal: q* fits p(z | x) better but, fitted by the mode-seeking ELBO, can be
narrower than it, and the mixture's weights are at most twice those of either alone
(Hesterberg 1995). All are nats per data point, as means over the points with their
standard errors; each gap's error is that of its per-point differences.
"""

from __future__ import annotations

from functools import partial

import pyro
import pyro.distributions as dist
import torch

from ppl_vae.guides.gaussian import DiagonalGaussian
from ppl_vae.guides.local import LocalGaussian

from ppl_vae.viz import figures
from ppl_vae.errors import UsageError
from ppl_vae.evaluation.evaluate import chunk_sizes, mean_and_se, per_point


def gaps(model, encoder, x: torch.Tensor, particles: int = 5000, *, refine_particles: int = 10, lr: float = 0.05,
         max_steps: int = 3000, window: int = 50, tol: float = 0.01) -> dict:
    """log p(x), L[q*], L[q] and the two gaps for the points ``x`` [N, D].

    ``model``: a module with ``.model``; ``encoder``: a :class:`DiagonalGaussian`. The
    refinement options are those of :meth:`LocalGaussian.refine`.
    """
    if not isinstance(encoder, DiagonalGaussian):
        raise UsageError(f"gaps compares a diagonal Gaussian encoder (--guide gaussian) with per-point "
                         f"refinement in its family; this run's guide is a {type(encoder).__name__}.")
    with torch.no_grad():
        loc, scale = encoder(x)
    q_star = LocalGaussian(x.shape[0], encoder.latent_dim, loc, scale).to(x.device)
    history = q_star.refine(model.model, x, particles=refine_particles, lr=lr, max_steps=max_steps, window=window,
                            tol=tol)
    elbo_q, elbo_star, log_px = [], [], []
    batch, _ = chunk_sizes(x.shape[0], x[0].numel(), particles)
    for idx in torch.arange(x.shape[0], device=x.device).split(batch):  # per_point's own chunks: q*'s rows follow
        xb = x[idx]
        elbo_q.append(per_point(model.model, encoder.guide, xb, particles)[0])
        elbo_star.append(per_point(model.model, partial(q_star.sample, idx=idx), xb, particles)[0])
        log_px.append(per_point(model.model, partial(mixture_guide, encoder, q_star, idx=idx), xb, particles)[1])
    elbo_q, elbo_star, log_px = torch.cat(elbo_q), torch.cat(elbo_star), torch.cat(log_px)
    result = {"n": int(x.shape[0]), "particles": particles, "refine_steps": window * len(history),
              "refine_elbo_per_window": history}
    for key, values in (("log_px", log_px), ("elbo_q_star", elbo_star), ("elbo_q", elbo_q),
                        ("approximation_gap", log_px - elbo_star),
                        ("amortization_gap", elbo_star - elbo_q), ("total_gap", log_px - elbo_q)):
        result[key], result[f"{key}_se"] = mean_and_se(values)
    return result


def mixture_guide(encoder, q_star: LocalGaussian, x: torch.Tensor, idx: torch.Tensor):
    """The proposal ½ q(z | x) + ½ q*(z) for the points ``x``, rows ``idx`` of ``q_star``."""
    loc, scale = encoder(x)
    loc_star, scale_star = q_star.rows(idx, x.shape[0])
    components = dist.Normal(torch.stack([loc, loc_star], -2), torch.stack([scale, scale_star], -2)).to_event(1)
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.MixtureSameFamily(dist.Categorical(logits=loc.new_zeros(x.shape[0], 2)), components))


def plot(result: dict, path: str) -> str:
    """Bar chart of the two gaps and their sum, with ±2 standard errors."""
    fig, ax = figures.figure(5, 3.5)
    keys = ("approximation_gap", "amortization_gap", "total_gap")
    values, errors = [result[k] for k in keys], [2 * result[f"{k}_se"] for k in keys]
    ax.bar(["approximation\nlog p(x) − L[q*]", "amortization\nL[q*] − L[q]", "total\nlog p(x) − L[q]"],
           values, yerr=errors, color=["tab:blue", "tab:orange", "tab:gray"], capsize=4)
    ax.set_ylabel("nats per data point")
    ax.set_title(f"log p(x) ≈ {result['log_px']:.2f} (K = {result['particles']}, {result['n']} test points)",
                 fontsize=10)
    fig.tight_layout()
    return figures.save(fig, path)
