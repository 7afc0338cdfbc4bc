"""A sigmoid belief network on the digits (Neal 1992; the benchmark of VIMCO, REBAR/RELAX and DisARM): 32
binary latents b ~ Bern(σ(a)), x | b ~ Bern(σ(W b + c)), and the amortized guide q(b | x) = Bern(σ(A x + d)),
the "linear" one-stochastic-layer variant of those papers, written as a user writes a Pyro pair:

    ppl-vae compare --pair scripts/examples/sbn.py:make_pair --out runs/sbn \\
        --objectives disarm,arm,vimco,score-avg,score-nn,rws,concrete,concrete-st --particles 2 --epochs 50

No latent can be reparameterized, so every objective there is a score-function or antithetic estimator (or
RWS's wake update); ``elbo`` would train this pair with Pyro's plain score function.
"""

import pyro
import pyro.distributions as dist
import torch
from torch import nn

LATENTS = 32


class SBN(nn.Module):
    """p(b) p(x | b): a learned prior over the 32 bits and a linear decoder to Bernoulli pixels."""

    def __init__(self, x_dim: int):
        super().__init__()
        self.prior = nn.Parameter(torch.zeros(LATENTS))
        self.decoder = nn.Linear(LATENTS, x_dim)

    def model(self, x):
        pyro.module("sbn", self)
        with pyro.plate("data", x.shape[0]):
            b = pyro.sample("b", dist.Bernoulli(logits=self.prior).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.decoder(b)).to_event(1), obs=x)


class Encoder(nn.Module):
    """q(b | x): independent bits with logits A x + d."""

    def __init__(self, x_dim: int):
        super().__init__()
        self.net = nn.Linear(x_dim, LATENTS)

    def guide(self, x):
        pyro.module("encoder", self)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("b", dist.Bernoulli(logits=self.net(x)).to_event(1))


def make_pair(data):
    """(model, guide) for ``data``, a ppl_vae Dataset; called after the run's seed is set."""
    return SBN(data.x_dim), Encoder(data.x_dim)
