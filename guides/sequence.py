"""The structured inference network of deep Markov models (Krishnan, Shalit & Sontag 2017, "ST-R"):

    q_φ(z_{1:T} | x_{1:T}) = Π_t q_φ(z_t | z_{t−1}, x_{t:T}),
    q_φ(z_t | z_{t−1}, x_{t:T}) = N(μ_t, diag σ_t²),   (μ_t, σ_t) = combine(tanh(W z_{t−1} + b), h_t),

h_t an RNN run backwards over x_{t:L} within each sequence's length L, and z_0 a learned vector. The
combiner averages the RNN's state with a transform of z_{t−1} and reads (μ, σ) from it, the paper's
"combiner function". Sampling is reparameterized. It is written in step form (:mod:`ppl_vae.steps`):
``init`` runs the RNN once over the whole sequences and keeps its states as context (not per
particle), ``step`` draws z_t; so the ELBO, the importance-weighted bounds and the particle filter's
bound (``fivo``) all train it. Sites ``z_t`` in ``pyro.plate("sequences")``.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from ppl_vae.models.mlp import MIN_SCALE
from ppl_vae.steps import unroll


def reversed_within(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Each sequence of x [B, T, D] reversed within its own length; padding stays at the end."""
    if lengths is None:
        return x.flip(1)
    t = torch.arange(x.shape[1], device=x.device)
    lengths = lengths.to(x.device)[:, None]
    source = torch.where(t < lengths, (lengths - 1 - t).clamp(min=0), t)
    return x.gather(1, source[..., None].expand_as(x))


class RNNGuide(nn.Module):
    """The guide above: a GRU of width ``hidden`` over x_{t:L}, a combiner to q(z_t | z_{t−1}, x_{t:T})."""

    latent_sites = ("z_t, one per time step",)
    lacks: dict[str, str] = {}
    point_mass = False

    @classmethod
    def from_config(cls, config, data):
        hidden = config.pair.hidden[0] if config.pair.hidden else 200
        return cls(data.x_shape[-1], config.pair.latent_dim, hidden)

    def __init__(self, x_dim: int, latent_dim: int = 2, hidden: int = 200):
        super().__init__()
        self.rnn = nn.GRU(x_dim, hidden, batch_first=True)
        self.from_z = nn.Linear(latent_dim, hidden)
        self.loc, self.scale = nn.Linear(hidden, latent_dim), nn.Linear(hidden, latent_dim)
        self.z_0 = nn.Parameter(torch.zeros(latent_dim))

    def forward(self, x, lengths=None):
        unroll(self, x, lengths)

    def init(self, state: dict, x) -> None:
        pyro.module("rnn_guide", self)
        backwards, _ = self.rnn(reversed_within(x, state.get("lengths")))
        state["guide"] = {"h": reversed_within(backwards, state.get("lengths"))}  # h_t summarizes x_{t:L}
        state["z"] = None

    def step(self, state: dict, x_t) -> None:
        pyro.module("rnn_guide", self)
        h_t = state["guide"]["h"][:, state["t"]]
        z_prev = self.z_0 if state["z"] is None else state["z"]
        combined = 0.5 * (torch.tanh(self.from_z(z_prev)) + h_t)
        with pyro.plate("sequences", x_t.shape[0]):
            state["z"] = pyro.sample(f"z_{state['t']}", dist.Normal(
                self.loc(combined), F.softplus(self.scale(combined)) + MIN_SCALE).to_event(1))
