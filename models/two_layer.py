"""The two-stochastic-layer VAE of Burda et al. (2016, §5):

    z₂ ~ N(0, I),   z₁ | z₂ ~ N(μ_θ(z₂), diag σ_θ(z₂)²),   x | z₁ ~ p_θ(x | z₁),

with z₂ (50) → 100-100 → z₁ (100) → 200-200 → x (784) in the paper, tanh units, and the
likelihoods of :class:`models.vae.VAE` for x | z₁. The encoder is
``guides/two_layer.py``: q(z₁ | x) q(z₂ | z₁). Sites ``z2``, ``z1`` (latent) and ``x``
(observed), all inside ``pyro.plate("data")``; ``--preset iwae2`` builds the paper's sizes.
"""

from __future__ import annotations

import pyro
import torch

from .mlp import GaussianNet, rows
from .vae import VAE


def sizes(config) -> dict:
    """z2 is ``latent_dim``; z1 and the width of the z1–z2 networks default to 2 × latent_dim,
    the paper's ratios (z2 = 50, z1 = 100, 100-100)."""
    p = config.pair
    return dict(z1_dim=p.z1_dim or 2 * p.latent_dim, z2_dim=p.latent_dim, hidden=p.hidden,
                hidden2=p.hidden2 or [2 * p.latent_dim] * 2, activation=p.activation)


class TwoLayerVAE(VAE):
    """A :class:`VAE` from z₁ to x under a Gaussian layer p_θ(z₁ | z₂) and the prior on z₂."""

    latent_sites = ("z1", "z2")
    defaults = {**VAE.defaults, "guide": "two-layer"}

    @classmethod
    def from_config(cls, config, data):
        return cls(data.x_dim, likelihood=config.pair.likelihood, **sizes(config))

    def __init__(self, x_dim: int, z1_dim: int = 100, z2_dim: int = 50, hidden=(200, 200), hidden2=(100, 100),
                 activation: str = "tanh", likelihood: str = "bernoulli"):
        super().__init__(x_dim, z1_dim, hidden, activation, likelihood)
        self.z1_dim = z1_dim
        self.latent_dim = z2_dim  # the top layer carries the prior N(0, I)
        self.top = GaussianNet(z2_dim, z1_dim, hidden2, activation)  # the encoder's conditional Gaussian

    def decode(self, z2: torch.Tensor) -> torch.Tensor:
        """E[x | z₁ = μ_θ(z₂)]: the mean image with z₁ at its conditional mean."""
        return super().decode(self.top(z2)[0])

    def model(self, x: torch.Tensor, idx=None):
        pyro.module("decoder", self)
        x = rows(x)  # data given in its own shape, e.g. [B, 1, 28, 28], as vectors
        with pyro.plate("data", x.shape[0]):
            z2 = pyro.sample("z2", self.prior(x))
            z1 = pyro.sample("z1", self.top.dist(z2))
            pyro.sample("x", self.likelihood_dist(z1), obs=x)
