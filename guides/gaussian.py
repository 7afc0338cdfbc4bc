"""The amortized diagonal-Gaussian encoder (Kingma & Welling 2014).

    q_φ(z | x) = N(z; μ_φ(x), diag σ_φ(x)²),   σ_φ(x) = softplus(s_φ(x)) + ε,

one network h_φ(x) shared by two linear heads for μ and s. Sampling is reparameterized,
z = μ_φ(x) + σ_φ(x) ⊙ ε with ε ~ N(0, I). Site ``z`` inside ``pyro.plate("data")``.
h_φ is an MLP unless another feature network is passed as ``body`` (e.g. the convolutions
of ``models/conv_vae.py``).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from ppl_vae.models.mlp import encoder_body

_MIN_SCALE = 1e-5


def loc_and_scale(out: torch.Tensor):
    """Split a head's output [..., 2q] into (μ, σ = softplus(s) + ε), each [..., q]."""
    loc, raw_scale = out.chunk(2, dim=-1)
    return loc, F.softplus(raw_scale) + _MIN_SCALE


class DiagonalGaussian(nn.Module):
    # What the registry's compatibility check reads (ppl_vae.registry.check):
    latent_sites = ("z",)
    refuses: dict[str, str] = {}  # objective -> why this guide cannot train with it
    point_mass = False

    @classmethod
    def from_config(cls, config, data):
        from .features import encoder_features

        net, width = encoder_features(config, data)
        return cls(data.x_dim, config.pair.latent_dim, body=net, features=width)

    def __init__(self, x_dim: int, latent_dim: int = 8, hidden=(200,), activation: str = "relu",
                 body: nn.Module | None = None, features: int | None = None):
        """``body``, if given, is h_φ with ``features`` outputs and replaces the MLP."""
        super().__init__()
        self.latent_dim = latent_dim
        if body is None:
            body, features = encoder_body(x_dim, hidden, activation)
        self.body = body
        self.head = nn.Linear(features, 2 * latent_dim)

    def forward(self, x: torch.Tensor):
        """(μ_φ(x), σ_φ(x)), each of shape [..., latent_dim]."""
        return loc_and_scale(self.head(self.body(x)))

    def dist(self, x: torch.Tensor) -> dist.Distribution:
        loc, scale = self(x)
        return dist.Normal(loc, scale).to_event(1)

    def guide(self, x: torch.Tensor, idx=None):
        pyro.module("encoder", self)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", self.dist(x))
