"""A conditional VAE on the digits: p_θ(x | z, y) p(z) with the label y observed, and
q_φ(z | x, y) (Sohn, Lee & Yan 2015). Written as a user writes a Pyro pair, outside the library:

    ppl-vae train --pair scripts/examples/cvae.py:make_pair --out runs/cvae --epochs 30
    ppl-vae evaluate runs/cvae

The digits' class labels reach ``model`` and ``guide`` as ``y`` because both have a parameter of
that name (``ppl_vae.pair.named_inputs``); with ``Dataset.from_tensors({"x": ..., "y": ...})``
any tensor named like a parameter does.
"""

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

CLASSES = 10


class Decoder(nn.Module):
    """p_θ(x | z, y) = Bernoulli(logits = f_θ(z, 1_y)), and the prior p(z) = N(0, I)."""

    def __init__(self, x_dim: int, z_dim: int = 8, hidden: int = 200):
        super().__init__()
        self.z_dim = z_dim
        self.net = nn.Sequential(nn.Linear(z_dim + CLASSES, hidden), nn.ReLU(), nn.Linear(hidden, x_dim))

    def model(self, x, y):
        pyro.module("decoder", self)
        x = x.reshape(x.shape[0], -1)  # images as vectors, whether the data holds them so or [N, 8, 8]
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.z_dim), 1.0).to_event(1))
            label = F.one_hot(y, CLASSES).to(x).expand(*z.shape[:-1], CLASSES)  # [particles, batch, classes]
            pyro.sample("x", dist.Bernoulli(logits=self.net(torch.cat([z, label], -1))).to_event(1), obs=x)


class Encoder(nn.Module):
    """q_φ(z | x, y) = N(μ_φ(x, 1_y), diag σ_φ(x, 1_y)²)."""

    def __init__(self, x_dim: int, z_dim: int = 8, hidden: int = 200):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(x_dim + CLASSES, hidden), nn.ReLU(), nn.Linear(hidden, 2 * z_dim))

    def guide(self, x, y):
        pyro.module("encoder", self)
        x = x.reshape(x.shape[0], -1)
        with pyro.plate("data", x.shape[0]):
            loc, log_scale = self.net(torch.cat([x, F.one_hot(y, CLASSES).to(x)], -1)).chunk(2, -1)
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


def make_pair(data):
    """(model, guide) for ``data``, a ppl_vae Dataset; called after the run's seed is set."""
    return Decoder(data.x_dim), Encoder(data.x_dim)
