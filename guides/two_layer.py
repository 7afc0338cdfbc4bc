"""The encoders of the two-stochastic-layer VAE (Burda et al. 2016, §5), two rungs of the ladder:

    structured (``--guide two-layer``):        q_φ(z₁, z₂ | x) = q_φ(z₁ | x) q_φ(z₂ | z₁),
    fully factorised (``--guide two-layer-mf``): q_φ(z₁, z₂ | x) = q_φ(z₁ | x) q_φ(z₂ | x),

each factor a diagonal Gaussian whose mean and scale come from an MLP: x → 200-200 → z₁(100)
and z₁ → 100-100 → z₂(50) in the paper (x → 100-100 → z₂ for the factorised q(z₂ | x)). The
structured guide follows the model's chain z₂ → z₁ → x backwards, so q(z₂ | z₁) can track the
posterior's dependence between the layers; the factorised one cannot, and in exchange its
KL terms have closed forms given the sampled z₂ (``elbo-analytic`` applies). Sites ``z1`` and
``z2`` inside ``pyro.plate("data")``; the model is ``models/two_layer.py``.
"""

from __future__ import annotations

import pyro
import torch
from torch import nn

from .gaussian import DiagonalGaussian


class TwoLayerGaussian(nn.Module):
    latent_sites = ("z1", "z2")
    lacks = {"closed_form_kl": "q(z2 | z1) depends on the sampled z1, so the analytic KL of a mean-field guide "
                               "does not apply"}
    point_mass = False

    @classmethod
    def from_config(cls, config, data):
        from ppl_vae.models.two_layer import sizes

        return cls(data.x_dim, **sizes(config))

    factorized = False  # q(z2 | x) instead of q(z2 | z1)

    def __init__(self, x_dim: int, z1_dim: int = 100, z2_dim: int = 50, hidden=(200, 200), hidden2=(100, 100),
                 activation: str = "tanh"):
        super().__init__()
        self.q1 = DiagonalGaussian(x_dim, z1_dim, hidden, activation)
        self.q2 = DiagonalGaussian(x_dim if self.factorized else z1_dim, z2_dim, hidden2, activation)

    def guide(self, x: torch.Tensor, idx=None):
        pyro.module("encoder", self)
        with pyro.plate("data", x.shape[0]):
            if self.factorized:  # in the model's order, as Pyro's mean-field check asks
                pyro.sample("z2", self.q2.dist(x))
                pyro.sample("z1", self.q1.dist(x))
            else:
                z1 = pyro.sample("z1", self.q1.dist(x))
                pyro.sample("z2", self.q2.dist(z1))


class FactorizedTwoLayerGaussian(TwoLayerGaussian):
    """``--guide two-layer-mf``: q(z1 | x) q(z2 | x), the fully factorised rung below :class:`TwoLayerGaussian`."""

    lacks: dict[str, str] = {}
    factorized = True
