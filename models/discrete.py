"""Discrete-latent models: the sigmoid belief network and a categorical-latent VAE, the benchmarks of the
estimators for discrete latents (VIMCO, Concrete, ARM/DisARM).

The sigmoid belief network (Neal 1992), one stochastic layer of D binary units as in Mnih & Rezende
(2016), Maddison et al. (2017) and Dong, Mnih & Tucker (2020):

    b ~ Π_i Bern(σ(a_i)),   x | b ~ Π_d Bern(σ(f_θ(b)_d)),

with a learned prior a and f_θ linear ("linear" SBN, ``--hidden`` empty) or an MLP ("non-linear",
e.g. two tanh layers of 200). Site ``b`` (latent) and ``x`` (observed) in ``pyro.plate("data")``;
``--preset sbn`` builds the papers' linear 200-unit one, ``--preset sbn-nonlinear`` the non-linear one.

Its two-layer form (``--model sbn2``, ``--preset sbn2``: Mnih & Rezende 2016; Dong et al. 2020's "two
layers"), both layers of D bits, the upper one linear:

    b₂ ~ Π_i Bern(σ(a_i)),   b₁ | b₂ ~ Π_i Bern(σ(W b₂ + c)_i),   x | b₁ ~ Π_d Bern(σ(f_θ(b₁)_d)),

sites ``b2``, ``b1``, ``x``; its guide (``bernoulli2``) follows the chain back, q(b₁ | x) q(b₂ | b₁).

The categorical VAE (Jang et al. 2017; Maddison et al. 2017): G latents of C categories each, one-hot,

    c_g ~ OneHotCategorical(1/C),   x | c ~ Π_d Bern(σ(f_θ(c)_d)),

site ``c`` of shape [G, C] (``--latent-dim`` G, ``--categories`` C; ``--preset cat-vae``: 20 × 10,
decoder 256-512). Neither has a latent the reparameterization trick reaches: they train with the
score function (score*, vimco, rws), the antithetic estimators (disarm, arm: the SBN's Bernoulli
latents) or a relaxation (concrete, concrete-st); with at most 12 bits (4096 joint values) in all, enum
sums them out exactly, an exact gradient to compare the others with.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from .mlp import mlp, rows


class DiscreteVAE(nn.Module):
    """What both models share: a decoder f_θ from the latent code to Bernoulli pixels, and the program, whose
    latent site is the class's (``latent_sites``) and whose prior is the subclass's."""

    # What the registry's compatibility check reads (ppl_vae.registry.check):
    latent_sites: tuple[str, ...] = ()
    enumerated: tuple[str, ...] = ()  # the latents `enum` sums out exactly (in the guide, over every joint value)
    fit_methods = ("svi",)
    objectives = None
    continuous_data = False

    def __init__(self, x_dim: int, code_dim: int, hidden, activation: str):
        super().__init__()
        self.x_dim, self.latent_dim = x_dim, code_dim
        self.decoder = mlp([code_dim, *hidden, x_dim], activation)

    def code(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's input for a latent value z (the value itself here)."""
        return z

    def likelihood_dist(self, z: torch.Tensor) -> dist.Distribution:
        return dist.Bernoulli(logits=self.decoder(self.code(z)), validate_args=False).to_event(1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """E[x | z]: the pixel probabilities."""
        return torch.sigmoid(self.decoder(self.code(z)))

    def model(self, x: torch.Tensor, idx=None):
        pyro.module("decoder", self)
        x = rows(x)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample(self.latent_sites[0], self.prior(x))
            pyro.sample("x", self.likelihood_dist(z), obs=x)


class SBN(DiscreteVAE):
    latent_sites = enumerated = ("b",)
    defaults = {"guide": "bernoulli", "objective": "disarm", "binarize": "dynamic"}

    @classmethod
    def from_config(cls, config, data):
        p = config.pair
        return cls(data.x_dim, p.latent_dim, p.hidden, p.activation)

    def __init__(self, x_dim: int, latent_dim: int = 200, hidden=(), activation: str = "tanh"):
        super().__init__(x_dim, latent_dim, hidden, activation)
        self.prior_logits = nn.Parameter(torch.zeros(latent_dim))

    def prior(self, like: torch.Tensor) -> dist.Distribution:
        return dist.Bernoulli(logits=self.prior_logits.to(like.dtype)).to_event(1)


class TwoLayerSBN(SBN):
    latent_sites = enumerated = ("b1", "b2")
    defaults = {"guide": "bernoulli2", "objective": "disarm", "binarize": "dynamic"}

    def __init__(self, x_dim: int, latent_dim: int = 200, hidden=(), activation: str = "tanh"):
        super().__init__(x_dim, latent_dim, hidden, activation)
        self.upper = nn.Linear(latent_dim, latent_dim)  # b₂ → the logits of b₁

    def model(self, x: torch.Tensor, idx=None):
        pyro.module("decoder", self)
        x = rows(x)
        with pyro.plate("data", x.shape[0]):
            b2 = pyro.sample("b2", self.prior(x))
            b1 = pyro.sample("b1", dist.Bernoulli(logits=self.upper(b2)).to_event(1))
            pyro.sample("x", self.likelihood_dist(b1), obs=x)


class CategoricalVAE(DiscreteVAE):
    latent_sites = enumerated = ("c",)
    defaults = {"guide": "categorical", "objective": "concrete", "binarize": "dynamic"}

    @classmethod
    def from_config(cls, config, data):
        p = config.pair
        return cls(data.x_dim, p.latent_dim, p.categories, p.hidden, p.activation)

    def __init__(self, x_dim: int, groups: int = 20, categories: int = 10, hidden=(256, 512),
                 activation: str = "relu"):
        super().__init__(x_dim, groups * categories, hidden, activation)
        self.groups, self.categories = groups, categories

    def prior(self, like: torch.Tensor) -> dist.Distribution:
        return dist.OneHotCategorical(logits=like.new_zeros(self.groups, self.categories)).to_event(1)

    def code(self, c: torch.Tensor) -> torch.Tensor:
        """c [..., G, C] as [..., G·C]; given flat already (a figure's posterior means), as it is."""
        return c.flatten(-2) if c.shape[-2:] == (self.groups, self.categories) else c
