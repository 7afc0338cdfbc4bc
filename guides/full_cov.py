"""The amortized full-covariance Gaussian encoder, through its Cholesky factor.

    q_φ(z | x) = N(z; μ_φ(x), L_φ(x) L_φ(x)ᵀ),   L = M ⊙ L′_φ(x) + diag σ_φ(x),

with M the strictly lower-triangular mask of ones and σ = softplus(s) + ε > 0 (Kingma &
Welling 2019, "An Introduction to Variational Autoencoders", §2.5). L is lower-triangular
with diagonal σ, so the reparameterization z = μ + L ε, ε ~ N(0, I) has
log |det ∂z/∂ε| = Σᵢ log σᵢ, as cheap as for the diagonal encoder. Site ``z``
inside ``pyro.plate("data")``, as ``MultivariateNormal(scale_tril=L)``.

Pyro has no closed-form KL between a ``MultivariateNormal`` q and the ``Normal(…).to_event(1)``
prior; this module registers it, so ``TraceMeanField_ELBO`` (``elbo-analytic``) uses it.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import register_kl

from ppl_vae.models.mlp import loc_and_scale


class FullCovGaussian(nn.Module):
    latent_sites = ("z",)
    lacks: dict[str, str] = {}
    point_mass = False

    @classmethod
    def from_config(cls, config, data):
        from .features import encoder_features

        return cls(*encoder_features(config, data), config.pair.latent_dim)

    def __init__(self, body: nn.Module, features: int, latent_dim: int):
        """``body``: the feature network h_φ(x) with ``features`` outputs."""
        super().__init__()
        self.latent_dim = latent_dim
        self.body = body
        self.head = nn.Linear(features, 2 * latent_dim)
        self.lower = nn.Linear(features, latent_dim ** 2)
        # q starts as the diagonal encoder and learns its correlations: d(d−1)/2 random
        # off-diagonal entries would start it far wider than the prior in d = 50 dimensions
        nn.init.zeros_(self.lower.weight)
        nn.init.zeros_(self.lower.bias)
        self.register_buffer("mask", torch.ones(latent_dim, latent_dim).tril(-1))

    def forward(self, x: torch.Tensor):
        """(μ_φ(x) [..., q], L_φ(x) [..., q, q])."""
        h = self.body(x)
        loc, scale = loc_and_scale(self.head(h))
        lower = self.lower(h).unflatten(-1, (self.latent_dim, self.latent_dim))
        return loc, self.mask * lower + torch.diag_embed(scale)

    def dist(self, x: torch.Tensor) -> dist.Distribution:
        loc, scale_tril = self(x)
        return dist.MultivariateNormal(loc, scale_tril=scale_tril)

    def guide(self, x: torch.Tensor, idx=None):
        pyro.module("encoder", self)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", self.dist(x))


@register_kl(dist.MultivariateNormal, dist.Independent)
def _kl_full_to_diagonal(q, p):
    """KL(N(μ, L Lᵀ) ‖ N(m, diag v)) = ½ [Σᵢ (Σᵢᵢ + (μᵢ − mᵢ)²) / vᵢ − d + Σᵢ log vᵢ − log |L Lᵀ|]."""
    if not isinstance(p.base_dist, torch.distributions.Normal) or p.reinterpreted_batch_ndims != 1:
        raise NotImplementedError
    var = p.base_dist.scale.pow(2)
    diag_cov = q.scale_tril.pow(2).sum(-1)
    log_det = 2 * q.scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    ratio = (diag_cov + (q.loc - p.base_dist.loc).pow(2)) / var
    return 0.5 * (ratio.sum(-1) - q.loc.shape[-1] + var.log().sum(-1) - log_det)
