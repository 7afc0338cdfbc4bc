"""The deep Markov model (Krishnan, Shalit & Sontag 2017): a state-space model whose transition and
emission are neural networks,

    z_t | z_{t−1} ~ N(μ_θ(z_{t−1}), diag σ_θ(z_{t−1})²),   z_0 a learned vector,
    x_t | z_t ~ p_θ(x_t | z_t)   (Bernoulli(σ(f_θ(z_t))) for binary data, N(f_θ(z_t), diag s²) for real values),

for sequences x_{1:L} of their own lengths L ≤ T (the steps past L are masked out of every log-density).
The transition is the paper's gated one: a proposed mean g(z_{t−1}) mixed with a linear map of z_{t−1}
by a learned gate, μ = (1 − γ) ⊙ W z_{t−1} + γ ⊙ g(z_{t−1}), σ = softplus(V ReLU(g(z_{t−1}))). Written in
step form (:mod:`ppl_vae.steps`), so the ELBO, the importance-weighted bounds and the particle filter's
bound (``fivo``) all train it; its guide is the structured inference network
(:class:`ppl_vae.guides.sequence.RNNGuide`). Sites ``z_t`` and ``x_t`` in ``pyro.plate("sequences")``.
The bound of a sequence is in nats per sequence; per time step it is divided by L.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from ppl_vae.models.mlp import MIN_SCALE, mlp
from ppl_vae.steps import unroll


class GatedTransition(nn.Module):
    """p(z_t | z_{t−1}) as the paper's gated transition (module doc)."""

    def __init__(self, latent_dim: int, hidden: int):
        super().__init__()
        self.gate = mlp([latent_dim, hidden, latent_dim])
        self.proposed = mlp([latent_dim, hidden, latent_dim])
        self.linear = nn.Linear(latent_dim, latent_dim)
        self.scale = nn.Linear(latent_dim, latent_dim)
        with torch.no_grad():  # start as the identity map, as the paper does
            self.linear.weight.copy_(torch.eye(latent_dim))
            self.linear.bias.zero_()

    def forward(self, z_prev: torch.Tensor) -> dist.Distribution:
        gate, proposed = torch.sigmoid(self.gate(z_prev)), self.proposed(z_prev)
        loc = (1 - gate) * self.linear(z_prev) + gate * proposed
        return dist.Normal(loc, F.softplus(self.scale(F.relu(proposed))) + MIN_SCALE).to_event(1)


class DMM(nn.Module):
    # What the registry's compatibility check reads (ppl_vae.registry.check):
    latent_sites = ("z_t, one per time step",)
    enumerated = ()
    fit_methods = ("svi",)
    objectives = None
    continuous_data = False
    defaults = {"guide": "rnn", "objective": "elbo", "binarize": "none"}

    @classmethod
    def from_config(cls, config, data):
        hidden = config.pair.hidden[0] if config.pair.hidden else 200
        return cls(data.x_shape[-1], config.pair.latent_dim, hidden, config.pair.likelihood)

    def __init__(self, x_dim: int, latent_dim: int = 2, hidden: int = 200, likelihood: str = "gaussian"):
        super().__init__()
        if likelihood not in ("gaussian", "bernoulli"):
            raise ValueError(f"the DMM's emission is gaussian or bernoulli, not {likelihood!r}")
        self.likelihood = likelihood
        self.transition = GatedTransition(latent_dim, hidden)
        self.emitter = mlp([latent_dim, hidden, hidden, x_dim])
        self.raw_scale = nn.Parameter(torch.zeros(x_dim))
        self.z_0 = nn.Parameter(torch.zeros(latent_dim))

    def model(self, x, lengths=None):
        """The whole sequences x [B, T, D]: :meth:`step` over time (:func:`~ppl_vae.steps.unroll`)."""
        unroll(self, x, lengths)

    def init(self, state: dict, x) -> None:
        state["z"] = None

    def emission(self, z: torch.Tensor) -> dist.Distribution:
        out = self.emitter(z)
        if self.likelihood == "bernoulli":
            return dist.Bernoulli(logits=out, validate_args=False).to_event(1)
        return dist.Normal(out, F.softplus(self.raw_scale) + MIN_SCALE).to_event(1)

    def step(self, state: dict, x_t) -> None:
        pyro.module("dmm", self)
        t, z_prev = state["t"], self.z_0 if state["z"] is None else state["z"]
        with pyro.plate("sequences", x_t.shape[0]):
            z = pyro.sample(f"z_{t}", self.transition(z_prev))
            pyro.sample(f"x_{t}", self.emission(z), obs=x_t)
        state["z"] = z
