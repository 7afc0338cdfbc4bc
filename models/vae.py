"""The variational autoencoder's generative model (Kingma & Welling 2014; Rezende et al. 2014).

    z ~ p(z) = N(0, I),        x | z ~ p_θ(x | z),

with a multilayer-perceptron decoder f_θ and one of the likelihoods

- ``bernoulli``: p_θ(x | z) = Π_d Bernoulli(x_d; σ(f_θ(z)_d)), for binary pixels (logits);
- ``gaussian``: p_θ(x | z) = Π_d N(x_d; f_θ(z)_d, s_d²) with a learned per-pixel scale s,
  for grey levels;
- ``continuous-bernoulli``: p_θ(x | z) = Π_d C(λ_d) λ_d^{x_d} (1 − λ_d)^{1 − x_d} with
  λ = σ(f_θ(z)) and its normalizing constant C(λ), a proper density on grey levels in
  [0, 1] (Loaiza-Ganem & Cunningham 2019) — the plain Bernoulli applied to grey levels omits
  C(λ) and is not a density on [0, 1].

Sites: ``z`` (latent) and ``x`` (observed), both inside ``pyro.plate("data")``.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from .mlp import mlp, rows

LIKELIHOODS = ("bernoulli", "gaussian", "continuous-bernoulli")
_MIN_SCALE = 1e-3  # keeps the Gaussian density bounded on constant pixels (e.g. image borders)


class VAE(nn.Module):
    # What the registry's compatibility check reads (ppl_vae.registry.check):
    latent_sites = ("z",)  # the sites a guide must sample
    enumerated = ()  # discrete sites summed out exactly (objective enum)
    fit_methods = ("svi",)
    objectives = None  # None: any objective the guide supports
    continuous_data = False  # True: a density of grey levels, so the data must not be binarized
    defaults = {"guide": "gaussian", "objective": "elbo", "binarize": "dynamic"}

    @classmethod
    def from_config(cls, config, data):
        p = config.pair
        return cls(data.x_dim, p.latent_dim, p.hidden, p.activation, p.likelihood)

    def __init__(self, x_dim: int, latent_dim: int = 8, hidden=(200,), activation: str = "relu",
                 likelihood: str = "bernoulli"):
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood {likelihood!r}; choose one of {', '.join(LIKELIHOODS)}")
        self.x_dim, self.latent_dim, self.likelihood = x_dim, latent_dim, likelihood
        self.decoder = mlp([latent_dim, *hidden, x_dim], activation)
        if likelihood == "gaussian":
            self.raw_scale = nn.Parameter(torch.zeros(x_dim))

    def prior(self, like: torch.Tensor) -> dist.Distribution:
        """p(z) = N(0, I) on the device and dtype of ``like``."""
        zeros = like.new_zeros(self.latent_dim)
        return dist.Normal(zeros, 1.0).to_event(1)

    def likelihood_dist(self, z: torch.Tensor) -> dist.Distribution:
        """p_θ(x | z), with batch shape z.shape[:-1] and event shape [x_dim]."""
        out = self.decoder(z)
        if self.likelihood == "bernoulli":
            return dist.Bernoulli(logits=out, validate_args=False).to_event(1)
        if self.likelihood == "continuous-bernoulli":
            return dist.ContinuousBernoulli(logits=out, validate_args=False).to_event(1)
        return dist.Normal(out, F.softplus(self.raw_scale) + _MIN_SCALE).to_event(1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The mean E[x | z]: pixel probabilities for Bernoulli, grey levels for the others."""
        return self.likelihood_dist(z).base_dist.mean

    def model(self, x: torch.Tensor, idx=None):
        pyro.module("decoder", self)
        x = rows(x)  # data given in its own shape, e.g. [B, 1, 28, 28], as vectors
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.prior(x))
            pyro.sample("x", self.likelihood_dist(z), obs=x)
