"""Normalizing-flow encoders: a diagonal Gaussian pushed through T invertible maps conditioned on x.

    z₀ ~ N(μ_φ(x), diag σ_φ(x)²),   z_t = f_t(z_{t−1}; h_φ(x)),   z = z_T,
    log q_φ(z | x) = log N(z₀; μ, σ²) − Σ_t log |det ∂f_t/∂z_{t−1}|,

with h_φ(x) the encoder's features, passed to every step as its context:

- ``planar``: f(z) = z + û tanh(wᵀz + b), log |det| = log |1 + ψ(z)ᵀû| (Rezende & Mohamed
  2015), with (b, u, w) computed from h by a small network (Pyro's ``conditional_planar``);
- ``iaf``: inverse autoregressive flow (Kingma et al. 2016), Pyro's
  ``conditional_affine_autoregressive`` in its stable form z_t = s ⊙ z_{t−1} + (1 − s) ⊙ m,
  (m, logit s) from a MADE on (z_{t−1}, h), so log |det| = Σᵢ log sᵢ; the variable order is
  reversed between steps so that every coordinate can depend on every other;
- ``realnvp``: Real NVP's affine coupling layers (Dinh, Sohl-Dickstein & Bengio 2017), Pyro's
  ``conditional_affine_coupling``: with z = (a, b) split at d = ⌊D/2⌋,
  f(a, b) = (a, μ(a, h) + σ(a, h) ⊙ b), log |det| = Σᵢ log σᵢ(a, h), and the order reversed
  between layers so that each half is transformed in turn (alternating masks).

Sampling is reparameterized. For planar and IAF the density of a sample is computed from values
cached on the forward pass: neither is inverted here, so these guides support the estimators that
only score their own samples (``elbo``, ``iwae``, ``renyi``), not those that need log q at
a given z with the parameters held fixed (score function, RWS, STL, DReG); see
``ppl_vae/registry.py``. A coupling layer is inverted in closed form,
f⁻¹(a, c) = (a, (c − μ(a, h)) / σ(a, h)), so Real NVP's log q is known at any z and it trains
with every objective but ``elbo-analytic`` (no closed-form KL).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import transforms as T
from torch import nn

from .features import encoder_features
from ppl_vae.models.mlp import loc_and_scale

from ppl_vae.errors import UsageError

FLOWS = ("planar", "iaf", "realnvp")


class FlowGaussian(nn.Module):
    latent_sites = ("z",)
    lacks = {"closed_form_kl": "a flow has no closed-form KL to the prior",
             "log_q_at_any_z": "its density is known only at its own samples, from values cached on the forward pass "
                               "(the planar map has no inverse; Pyro scores IAF samples from cached values, not at a "
                               "given z with the parameters held fixed)"}
    point_mass = False

    @classmethod
    def planar(cls, config, data):
        return cls(*encoder_features(config, data), config.pair.latent_dim, "planar", config.pair.flow_depth)

    @classmethod
    def iaf(cls, config, data):
        return cls(*encoder_features(config, data), config.pair.latent_dim, "iaf", config.pair.flow_depth)

    def __init__(self, body: nn.Module, features: int, latent_dim: int, flow: str = "iaf", depth: int = 2):
        """``body``: the feature network h_φ(x) with ``features`` outputs; ``depth`` flow steps."""
        super().__init__()
        if flow not in FLOWS:
            raise ValueError(f"unknown flow {flow!r}; choose one of {', '.join(FLOWS)}")
        self.latent_dim, self.flow = latent_dim, flow
        self.body = body
        self.head = nn.Linear(features, 2 * latent_dim)
        hidden = [features]  # the conditioning networks: one hidden layer as wide as h
        if flow == "planar":
            steps = [T.conditional_planar(latent_dim, features, hidden) for _ in range(depth)]
        elif flow == "realnvp":
            if latent_dim < 2:
                raise UsageError("the realnvp guide splits z into two halves, so it needs --latent-dim 2 or more.")
            steps = [T.conditional_affine_coupling(latent_dim, features, hidden, split_dim=latent_dim // 2)
                     for _ in range(depth)]
        else:
            steps = [T.conditional_affine_autoregressive(latent_dim, features, hidden, stable=True)
                     for _ in range(depth)]
        self.steps = nn.ModuleList(steps)
        self.register_buffer("reverse", torch.arange(latent_dim - 1, -1, -1))

    def transforms(self, h: torch.Tensor) -> list:
        """The flow's maps f_1 … f_T given the features h, with order reversals between IAF and coupling steps."""
        out = []
        for t, step in enumerate(self.steps):
            if self.flow != "planar" and t > 0:
                out.append(T.Permute(self.reverse))
            out.append(step.condition(h))
        return out

    def dist(self, x: torch.Tensor) -> dist.Distribution:
        h = self.body(x)
        loc, scale = loc_and_scale(self.head(h))
        return dist.TransformedDistribution(dist.Normal(loc, scale).to_event(1), self.transforms(h))

    def guide(self, x: torch.Tensor, idx=None):
        pyro.module("encoder", self)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", self.dist(x))


class RealNVPGaussian(FlowGaussian):
    """``--guide realnvp``: the diagonal Gaussian through ``--flow-depth`` affine coupling layers; its log q is
    known at any z (see the module docstring), so it trains with every objective but ``elbo-analytic``."""

    lacks = {"closed_form_kl": "a flow has no closed-form KL to the prior"}

    @classmethod
    def from_config(cls, config, data):
        return cls(*encoder_features(config, data), config.pair.latent_dim, "realnvp", config.pair.flow_depth)
