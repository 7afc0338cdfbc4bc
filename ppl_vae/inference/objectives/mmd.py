"""Learning by comparison: the MMD-VAE (InfoVAE with α = 1; Zhao, Song & Ermon 2019).

Instead of the ELBO's KL(q_φ(z | x) ‖ p(z)) per point, the encoder's aggregate posterior
q_φ(z) = E_data[q_φ(z | x)] is compared with the prior by the maximum mean discrepancy
(Gretton et al. 2012), and each point is pulled toward reconstructing itself:

    L(θ, φ) = Σ_n E_q[log p_θ(x_n | z_n)] − λ N · MMD²(q_φ(z), p(z)),

    MMD²(q, p) = E_{q q}[k(z, z')] + E_{p p}[k(ζ, ζ')] − 2 E_{q p}[k(z, ζ)],
    k(a, b) = exp(−‖a − b‖² / (2d)),   d = the latent dimension,

with MMD² estimated on each mini-batch by the unbiased U-statistic between the B encoded
points z_n ~ q_φ(z | x_n) (one reparameterized draw each) and B draws ζ_m ~ p(z) from the
model's own prior (run without the guide; detached, so a learned prior gets no MMD gradient).
λ = ``mmd_scale`` (default 1000: the MMD² of a batch is of order 10⁻³–10⁻², the reconstruction
of order 10–100 nats per point). Pyro's ``Trace_MMD`` treats the whole batch as one vector per
particle rather than the batch's points as draws from q(z), so it is not this estimator.

L is not a bound on log p(x): the trainer's training number is L / N, labelled as the MMD
objective, and the test bound (``test_bound``) is the trained pair's ELBO, a bound like any other.
"""

from __future__ import annotations

import torch
from pyro import poutine

from ppl_vae.config import default
from ppl_vae.errors import Refusal, UsageError
from ppl_vae.inference.objectives.base import Needs, Objective
from ppl_vae.inference.objectives.weighted import latent_sites
from ppl_vae.inference.weights import data_plate, data_scale, elbo_bound, per_point


def rbf_mmd2(a: torch.Tensor, b: torch.Tensor, bandwidth: float | None = None) -> torch.Tensor:
    """The unbiased MMD² between samples a [n, d] and b [m, d], kernel exp(−‖u − v‖² / h), h = ``bandwidth``
    (default 2d)."""
    h = 2 * a.shape[-1] if bandwidth is None else bandwidth
    k = lambda u, v: torch.exp(-torch.cdist(u, v).pow(2) / h)  # noqa: E731
    n, m = a.shape[0], b.shape[0]
    kaa, kbb = k(a, a), k(b, b)
    return ((kaa.sum() - kaa.diagonal().sum()) / (n * (n - 1)) + (kbb.sum() - kbb.diagonal().sum()) / (m * (m - 1))
            - 2 * k(a, b).mean())


def flat_latents(trace, n: int) -> torch.Tensor:
    """The trace's latent values per data point, concatenated: [n, total latent dimension]."""
    return torch.cat([site["value"].reshape(n, -1) for _, site in latent_sites(trace)], -1)


class MMDLoss:
    """The loss of :mod:`ppl_vae.inference.objectives.mmd`: ``loss``, ``loss_and_grads`` and ``backward``
    return −(N/B)(Σ_n log p(x_n | z_n) − λ B MMD²) over the mini-batch."""

    name = "mmd"

    needs = Needs(guide=frozenset({"prior_latents"}), reparameterized=True,
                  local_latents="compares each point's code with prior draws",
                  batch_statistic="MMD² compares the whole mini-batch's codes with prior draws", min_batch=2)

    def __init__(self, mmd_scale: float = default("mmd_scale")):
        self.mmd_scale = mmd_scale

    def objective(self, model, guide, x, *args, **kwargs) -> torch.Tensor:
        n = x.shape[0]
        if n < 2:
            raise UsageError("the mmd objective compares the batch's encoded points with prior draws, so it needs "
                             "mini-batches of at least 2 points; raise --batch-size.")
        guide_tr = poutine.trace(guide).get_trace(x, *args, **kwargs)
        for name, site in latent_sites(guide_tr):
            if not site["fn"].has_rsample:
                raise Refusal(f"the mmd objective differentiates through the guide's samples, but site {name!r} "
                              f"draws from {type(site['fn']).__name__}, which has no reparameterized sampler",
                              lambda needs: not needs.reparameterized and needs.local_latents is None)
        model_tr = poutine.trace(poutine.replay(model, trace=guide_tr)).get_trace(x, *args, **kwargs)
        with torch.no_grad():
            prior_tr = poutine.trace(poutine.block(model, hide_types=["param"])).get_trace(x, *args, **kwargs)
        plate = data_plate(model_tr)
        reconstruction = (per_point(model_tr, 1, n, plate=plate) - per_point(model_tr, 1, n, observed=False,
                                                                               plate=plate))[0]
        mmd2 = rbf_mmd2(flat_latents(guide_tr, n), flat_latents(prior_tr, n))
        return data_scale(model_tr) * (reconstruction.sum() - self.mmd_scale * n * mmd2)

    def loss(self, model, guide, *args, **kwargs) -> float:
        with torch.no_grad():
            return -self.objective(model, guide, *args, **kwargs).item()

    def backward(self, model, guide, *args, **kwargs) -> torch.Tensor:
        value = self.objective(model, guide, *args, **kwargs)
        (-value).backward()
        return -value.detach()

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        return self.backward(model, guide, *args, **kwargs).item()


def mmd(particles: int = 1, *, mmd_scale: float = default("mmd_scale")) -> Objective:
    """The MMD-VAE objective; ``particles`` K is that of its test bound, the ELBO."""
    if not mmd_scale > 0:
        raise UsageError(f"--mmd-scale must be positive, got {mmd_scale}.")
    return Objective("mmd", MMDLoss(mmd_scale), particles, elbo_bound,
                     train_quantity="MMD objective (reconstruction − λ MMD², not a bound)", test_quantity="ELBO")
