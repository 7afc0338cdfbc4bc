"""Amortized guides for discrete latents: independent bits and independent one-hot categories.

    q_φ(b | x) = Π_i Bern(b_i; σ(g_φ(x)_i)),         (the sigmoid belief network's ``b``)
    q_φ(c | x) = Π_g OneHotCategorical(c_g; softmax(g_φ(x)_g)),   (the categorical VAE's ``c``, [G, C])

The two-layer sigmoid belief network's (``--guide bernoulli2``) follows its chain back,

    q_φ(b₁, b₂ | x) = Π_i Bern(b₁ᵢ; σ(g_φ(x)_i)) Π_i Bern(b₂ᵢ; σ(h_φ(b₁)_i)),

g_φ and h_φ MLPs (linear with ``--hidden`` empty). The antithetic estimators (disarm, arm) take the
Bernoulli guides, the two-layer one layer by layer; nothing is reparameterizable, and the Concrete
objectives relax all three.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from ppl_vae.models.mlp import Body, mlp


class BernoulliEncoder(nn.Module):
    # What the registry's compatibility check reads (ppl_vae.registry.check):
    latent_sites = ("b",)
    lacks: dict[str, str] = {}
    point_mass = False

    @classmethod
    def from_config(cls, config, data):
        return cls(data.x_dim, config.pair.latent_dim, config.pair.hidden, config.pair.activation)

    def __init__(self, x_dim: int, latent_dim: int = 200, hidden=(), activation: str = "tanh"):
        super().__init__()
        self.latent_dim = latent_dim
        self.net = Body(x_dim, *mlp([x_dim, *hidden, latent_dim], activation))

    def dist(self, x: torch.Tensor) -> dist.Distribution:
        return dist.Bernoulli(logits=self.net(x)).to_event(1)

    def guide(self, x: torch.Tensor, idx=None):
        pyro.module("encoder", self)
        with pyro.plate("data", x.shape[0]):
            pyro.sample(self.latent_sites[0], self.dist(x))


class TwoLayerBernoulli(BernoulliEncoder):
    latent_sites = ("b1", "b2")
    lacks = {"closed_form_kl": "q(b2 | b1) depends on the sampled b1, so the analytic KL of a mean-field guide "
                               "does not apply"}

    def __init__(self, x_dim: int, latent_dim: int = 200, hidden=(), activation: str = "tanh"):
        super().__init__(x_dim, latent_dim, hidden, activation)
        self.upper = mlp([latent_dim, *hidden, latent_dim], activation)  # b₁ → the logits of b₂

    def guide(self, x: torch.Tensor, idx=None):
        pyro.module("encoder", self)
        with pyro.plate("data", x.shape[0]):
            b1 = pyro.sample("b1", self.dist(x))
            pyro.sample("b2", dist.Bernoulli(logits=self.upper(b1)).to_event(1))


class CategoricalEncoder(BernoulliEncoder):
    latent_sites = ("c",)

    @classmethod
    def from_config(cls, config, data):
        p = config.pair
        return cls(data.x_dim, p.latent_dim, p.categories, p.hidden, p.activation)

    def __init__(self, x_dim: int, groups: int = 20, categories: int = 10, hidden=(512, 256),
                 activation: str = "relu"):
        super().__init__(x_dim, groups * categories, hidden, activation)
        self.groups, self.categories = groups, categories

    def dist(self, x: torch.Tensor) -> dist.Distribution:
        logits = self.net(x)
        return dist.OneHotCategorical(logits=logits.unflatten(-1, (self.groups, self.categories))).to_event(1)
