"""The multilayer perceptron that decoders and encoders are built from."""

from __future__ import annotations

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


def encoder_body(x_dim: int, hidden=(200,), activation: str = "relu") -> tuple[nn.Sequential, int]:
    """An encoder's feature network h(x) — the MLP x_dim → hidden..., activated — and its width."""
    sizes = [x_dim, *hidden]
    return mlp(sizes, activation, final_activation=True), sizes[-1]
