"""A point-estimate encoder: q_φ(z | x) = δ(z − f_φ(x)), the deterministic autoencoder.

It is the limit σ_φ(x) → 0 of the Gaussian encoder. The entropy of a point mass is −∞, so
the ELBO itself is −∞; what Pyro's ``Trace_ELBO`` computes with a ``Delta`` site (whose
log-density at its own value is 0) is the entropy-free remainder

    E_q[log p_θ(x | z)] + E_q[log p(z)] = log p_θ(x | f_φ(x)) + log p(f_φ(x)),

reconstruction plus a prior penalty on the code: an autoencoder regularized toward p(z), or
joint MAP estimation of z. It is not a bound on log p(x), and importance sampling with a
point-mass proposal does not estimate log p(x): the reported "bound" of such a run is this
objective, nats per data point, not a likelihood. Site ``z`` inside ``pyro.plate("data")``.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn


class DeltaEncoder(nn.Module):
    latent_sites = ("z",)
    lacks = {"density": "a point mass has no density to score or to importance-weight with (what trains is "
                        "reconstruction + log p(z))"}
    point_mass = True  # what trains is log p(x | f(x)) + log p(f(x)), not a bound

    @classmethod
    def from_config(cls, config, data):
        from .features import encoder_features

        return cls(*encoder_features(config, data), config.pair.latent_dim)

    def __init__(self, body: nn.Module, features: int, latent_dim: int):
        """``body``: the feature network h_φ(x) with ``features`` outputs."""
        super().__init__()
        self.latent_dim = latent_dim
        self.body = body
        self.head = nn.Linear(features, latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The code f_φ(x), shape [..., latent_dim]."""
        return self.head(self.body(x))

    def dist(self, x: torch.Tensor) -> dist.Distribution:
        return dist.Delta(self(x)).to_event(1)

    def guide(self, x: torch.Tensor, idx=None):
        pyro.module("encoder", self)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", self.dist(x))
