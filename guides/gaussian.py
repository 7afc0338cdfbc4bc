"""The amortized diagonal-Gaussian encoder (Kingma & Welling 2014).

    q_φ(z | x) = N(z; μ_φ(x), diag σ_φ(x)²),   σ_φ(x) = softplus(s_φ(x)) + ε,

one network h_φ(x) shared by two linear heads for μ and s. Sampling is reparameterized,
z = μ_φ(x) + σ_φ(x) ⊙ ε with ε ~ N(0, I). Site ``z`` inside ``pyro.plate("data")``.
h_φ is an MLP unless another feature network is passed as ``body`` (e.g. the convolutions
of ``models/conv_vae.py``).
"""

from __future__ import annotations

import pyro
import torch
from torch import nn

from ppl_vae.models.mlp import GaussianNet


class DiagonalGaussian(GaussianNet):
    # What the registry's compatibility check reads (ppl_vae.registry.check):
    latent_sites = ("z",)
    lacks: dict[str, str] = {}  # a capability objectives may need -> why this guide lacks it
    point_mass = False

    @classmethod
    def from_config(cls, config, data):
        from .features import encoder_features

        net, width = encoder_features(config, data)
        return cls(data.x_dim, config.pair.latent_dim, body=net, features=width)

    def __init__(self, x_dim: int, latent_dim: int = 8, hidden=(200,), activation: str = "relu",
                 body: nn.Module | None = None, features: int | None = None):
        """``body``, if given, is h_φ with ``features`` outputs and replaces the MLP."""
        super().__init__(x_dim, latent_dim, hidden, activation, body, features)
        self.latent_dim = latent_dim

    def guide(self, x: torch.Tensor, idx=None):
        pyro.module("encoder", self)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", self.dist(x))
