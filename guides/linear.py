"""A linear amortized Gaussian guide: the exact posterior family of linear-Gaussian models.

    q_φ(z | x) = N(z; A x + b, L Lᵀ),   L lower-triangular with positive diagonal

(diagonal L with ``full_cov=False``). For probabilistic PCA the exact posterior is in this
family, so :meth:`LinearGaussian.set_exact` makes q = p(z | x) and every bound tight.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn


class LinearGaussian(nn.Module):
    latent_sites = ("z",)
    lacks: dict[str, str] = {}
    point_mass = False

    @classmethod
    def from_config(cls, config, data):
        return cls(data.x_dim, config.pair.latent_dim)

    def __init__(self, x_dim: int, latent_dim: int, full_cov: bool = True):
        super().__init__()
        self.full_cov = full_cov
        self.A = nn.Parameter(torch.zeros(latent_dim, x_dim))
        self.b = nn.Parameter(torch.zeros(latent_dim))
        self.log_diag = nn.Parameter(torch.zeros(latent_dim))
        self.lower = nn.Parameter(torch.zeros(latent_dim, latent_dim)) if full_cov else None

    def scale_tril(self) -> torch.Tensor:
        L = torch.diag_embed(self.log_diag.exp())
        return L + self.lower.tril(-1) if self.full_cov else L

    def dist(self, x: torch.Tensor) -> dist.Distribution:
        loc = x @ self.A.T + self.b
        if self.full_cov:
            return dist.MultivariateNormal(loc, scale_tril=self.scale_tril())
        return dist.Normal(loc, self.log_diag.exp()).to_event(1)

    def guide(self, x: torch.Tensor, idx=None):
        pyro.module("linear_guide", self)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", self.dist(x))

    @torch.no_grad()
    def set_exact(self, ppca) -> "LinearGaussian":
        """Set q to the exact posterior p(z | x) of ``ppca`` (needs ``full_cov`` unless Σ is diagonal)."""
        A, b, cov = ppca.posterior_params()
        L = torch.linalg.cholesky(cov)
        self.A.copy_(A)
        self.b.copy_(b)
        self.log_diag.copy_(L.diagonal().log())
        if self.full_cov:
            self.lower.copy_(L.tril(-1))
        return self
