"""The multilayer perceptron that decoders and encoders are built from."""

from __future__ import annotations

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
    "leaky-relu": nn.LeakyReLU,
}


def mlp(sizes, activation: str = "relu", *, final_activation: bool = False) -> nn.Sequential:
    """Linear layers of the given sizes, e.g. [784, 200, 200, 50], with the activation between.

    ``final_activation`` also applies it after the last layer (an encoder's body, whose
    output feeds the heads). With a single size the network is the identity.
    """
    act = ACTIVATIONS[activation]
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if final_activation or i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def rows(x: torch.Tensor, d: int | None = None) -> torch.Tensor:
    """x [..., D] as it is (the very tensor, as ``obs=x`` wants it), or x given in its own shape, [B, C, H, W]
    say, as vectors [B, D]: the built-in networks take vectors, and a user's data reaches programs in the
    shape it was given. ``d``: D, where x may have more leading dimensions (particles); else x is [B, ...]."""
    flat = x.shape[-1] == d if d is not None else x.dim() == 2
    return x if flat else x.reshape(x.shape[0], -1)


class Body(nn.Sequential):
    """An MLP that takes data points in their own shape (:func:`rows`); its state is nn.Sequential's."""

    def __init__(self, d: int, *layers: nn.Module):
        super().__init__(*layers)
        self.d = d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(rows(x, self.d))


def encoder_body(x_dim: int, hidden=(200,), activation: str = "relu") -> tuple[nn.Sequential, int]:
    """An encoder's feature network h(x) — the MLP x_dim → hidden..., activated — and its width."""
    sizes = [x_dim, *hidden]
    return Body(x_dim, *mlp(sizes, activation, final_activation=True)), sizes[-1]


MIN_SCALE = 1e-5  # σ's floor: keeps log q finite where softplus(s) underflows


def loc_and_scale(out: torch.Tensor):
    """Split a head's output [..., 2q] into (μ, σ = softplus(s) + ε), each [..., q]."""
    loc, raw_scale = out.chunk(2, dim=-1)
    return loc, F.softplus(raw_scale) + MIN_SCALE


class GaussianNet(nn.Module):
    """A conditional diagonal Gaussian N(μ(h), diag σ(h)²): one network ``body`` (an MLP unless another
    is given, with ``features`` outputs) shared by two linear heads for μ and s, σ = softplus(s) + ε.
    The encoder q_φ(z | x) of ``guides/gaussian.py`` and the two-layer model's p_θ(z₁ | z₂) are one."""

    def __init__(self, in_dim: int, out_dim: int, hidden=(200,), activation: str = "relu",
                 body: nn.Module | None = None, features: int | None = None):
        super().__init__()
        if body is None:
            body, features = encoder_body(in_dim, hidden, activation)
        self.body = body
        self.head = nn.Linear(features, 2 * out_dim)

    def forward(self, h: torch.Tensor):
        """(μ(h), σ(h)), each of shape [..., out_dim]."""
        return loc_and_scale(self.head(self.body(h)))

    def dist(self, h: torch.Tensor) -> dist.Distribution:
        loc, scale = self(h)
        return dist.Normal(loc, scale).to_event(1)
