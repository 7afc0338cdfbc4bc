"""The approximation and amortization gaps of an encoder (Cremer, Li & Duvenaud 2018).

For a test point x, the encoder's q_φ(z | x), and q*_x the member of the same family that
maximizes the ELBO of x alone, the gap between log p(x) and the encoder's bound splits as

    log p(x) − L[q] = (log p(x) − L[q*])  +  (L[q*] − L[q])
                       approximation gap      amortization gap

The approximation gap is what the family (diagonal Gaussian) cannot express of p(z | x);
the amortization gap is what one network shared by all x loses against a q fitted to each.

For the diagonal encoder, q* is found per test point by :meth:`guides.local.LocalGaussian.refine`:
a table of (m_x, s_x) started at the encoder's output and moved by Adam on the ELBO with θ fixed
until the mean bound stops rising, all points at once. log p(x) is then the importance-sampled
log p̂_K(x) (K = 5000 by default) with the defensive mixture ½ q + ½ q* as proposal: q* fits
p(z | x) better but, fitted by the mode-seeking ELBO, can be narrower than it, and the mixture's
weights are at most twice those of either alone (Hesterberg 1995).

Any other encoder (full covariance, the flows, the auxiliary guide) has no such table: for each test
point in turn, a copy of its parameters — the guide's, and an auxiliary guide's reverse model
r(a | z, x), which belongs to its bound — is refined by Adam on the ELBO of that point alone, with
θ fixed and the same schedule, from the amortized values (:func:`refined_bounds`). Every member of
these families is reachable at one point (the heads' biases alone set its parameters), so this
finds the family's q*_x as the table does; it costs one optimization per point, hence fewer points.
log p(x) is then log p̂_K(x) with the encoder's q as proposal.

L[q] and L[q*] are ELBOs estimated with K particles. All are nats per data point, as means
over the points with their standard errors; each gap's error is that of its per-point differences.
"""

from __future__ import annotations

import statistics
from functools import partial

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine

from ppl_vae.guides.gaussian import DiagonalGaussian
from ppl_vae.guides.auxiliary import ReverseModel
from ppl_vae.guides.local import LocalGaussian, climb
from ppl_vae.inference.objectives.weighted import param_tensors
from ppl_vae.inference.weights import log_weights

from ppl_vae.viz import figures
from ppl_vae.errors import UsageError
from ppl_vae.evaluation.evaluate import latent_sites, mean_and_se, per_point
from ppl_vae.inference.chunks import chunk_sizes


LOCAL_LR, NETWORK_LR = 0.05, 3e-3  # Adam's rate for a table of (m, s), and for a copy of a network's weights


def gaps(model, encoder, x: torch.Tensor, particles: int = 5000, *, refine_particles: int = 10,
         lr: float | None = None, max_steps: int = 3000, window: int = 50, tol: float = 0.01) -> dict:
    """log p(x), L[q*], L[q] and the two gaps for the points ``x`` [N, D].

    ``model``: a module with ``.model``; ``encoder``: a guide module with ``.guide``, refined by
    a local table if it is a :class:`DiagonalGaussian`, else by a copy per point (see the module
    docstring). The refinement options are those of :meth:`LocalGaussian.refine`; ``lr`` defaults
    to :data:`LOCAL_LR` for the table and :data:`NETWORK_LR` for a network.
    """
    if getattr(encoder, "point_mass", False) or isinstance(encoder, LocalGaussian) or not hasattr(encoder, "guide"):
        raise UsageError(f"gaps compares an encoder's q with q refined per test point in its family; this run's "
                         f"guide is a {type(encoder).__name__}, which has no encoder with a density to refine; "
                         f"use a run with --guide gaussian or another amortized guide.")
    _, globals_, _ = latent_sites(model.model, encoder.guide, x)
    if globals_:
        raise UsageError(f"gaps compares bounds on log p(x) per test point, and site {globals_[0]!r} is a global "
                         f"latent (outside pyro.plate('data')), so this model has no per-point log p(x); "
                         f"use ppl-vae evaluate, which reports the ELBO given q(β).")
    if not isinstance(encoder, DiagonalGaussian):
        return network_gaps(model, encoder, x, particles, refine_particles=refine_particles, lr=lr or NETWORK_LR,
                            max_steps=max_steps, window=window, tol=tol)
    with torch.no_grad():
        loc, scale = encoder(x)
    q_star = LocalGaussian(x.shape[0], encoder.latent_dim, loc, scale).to(x.device)
    history = q_star.refine(model.model, x, particles=refine_particles, lr=lr or LOCAL_LR, max_steps=max_steps,
                            window=window, tol=tol)
    elbo_q, elbo_star, log_px = [], [], []
    batch, _ = chunk_sizes(x.shape[0], x[0].numel(), particles)
    for idx in torch.arange(x.shape[0], device=x.device).split(batch):  # per_point's own chunks: q*'s rows follow
        xb = x[idx]
        elbo_q.append(per_point(model.model, encoder.guide, xb, particles)[0])
        elbo_star.append(per_point(model.model, partial(q_star.sample, idx=idx), xb, particles)[0])
        log_px.append(per_point(model.model, partial(mixture_guide, encoder, q_star, idx=idx), xb, particles)[1])
    return summary(torch.cat(log_px), torch.cat(elbo_star), torch.cat(elbo_q), particles,
                   refine_steps=window * len(history), refine_elbo_per_window=history, refined="local table")


def summary(log_px, elbo_star, elbo_q, particles: int, **details) -> dict:
    """The gaps' result: each quantity's mean over the points and its standard error."""
    result = {"n": int(log_px.shape[0]), "particles": particles, **details}
    for key, values in (("log_px", log_px), ("elbo_q_star", elbo_star), ("elbo_q", elbo_q),
                        ("approximation_gap", log_px - elbo_star),
                        ("amortization_gap", elbo_star - elbo_q), ("total_gap", log_px - elbo_q)):
        result[key], result[f"{key}_se"] = mean_and_se(values)
    return result


def network_gaps(model, encoder, x, particles: int, **refine) -> dict:
    """:func:`gaps` for an encoder without a local table: q*_x by :func:`refined_bounds`."""
    elbo_q, log_px = per_point(model.model, encoder.guide, x, particles)
    elbo_star, steps = refined_bounds(model, encoder, x, particles, **refine)
    return summary(log_px, elbo_star, elbo_q, particles, refine_steps=steps, refined="a copy per point")


def refined_bounds(model, encoder, x, particles: int, *, refine_particles: int = 10, lr: float = NETWORK_LR,
                   max_steps: int = 3000, window: int = 50, tol: float = 0.01) -> tuple[torch.Tensor, int]:
    """(L[q*_x] per point of ``x`` from ``particles`` draws, the median refinement steps per point): for each
    point, the variational parameters (the guide's, found by tracing it) refined on its ELBO alone from the
    amortized values, θ fixed (only their gradients are taken); they are the amortized ones again afterwards."""
    with torch.no_grad():  # the guide's parameters as SVI sees them: its modules' and its own pyro.params
        variational = param_tensors(poutine.trace(encoder.guide).get_trace(x[:1]))
    if isinstance(model, ReverseModel):
        variational += list(model.reverse.parameters())
    amortized = [p.detach().clone() for p in variational]
    bounds, steps = [], []
    try:
        for n in range(x.shape[0]):
            xn = x[n:n + 1]
            history = climb(variational, lambda: log_weights(model.model, encoder.guide, xn,
                                                             particles=refine_particles).mean(0),
                            lr=lr, max_steps=max_steps, window=window, tol=tol)
            steps.append(window * len(history))
            bounds.append(per_point(model.model, encoder.guide, xn, particles)[0])
            restore(variational, amortized)
    finally:
        restore(variational, amortized)
    return torch.cat(bounds), int(statistics.median(steps))


@torch.no_grad()
def restore(params: list, values: list) -> None:
    for p, value in zip(params, values):
        p.copy_(value)


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
