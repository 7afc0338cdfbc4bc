"""A convolutional VAE for images whose sides are multiples of 8 (e.g. MNIST with ``--pad 32``).

The generative model is :class:`models.vae.VAE`'s, z ~ N(0, I), x | z ~ p_θ(x | f_θ(z)), with
f_θ the mirror of the encoder's convolutions:

    encoder h_φ(x):  C×H×W → 32×H/2 → 64×H/4 → 128×H/8  (3×3 convolutions, stride 2, ReLU)
    decoder f_θ(z):  z → 128×H/8×W/8 (linear) → 64×H/4 → 32×H/2 → C×H×W  (3×3 transposed convolutions)

The built-in data sets are flattened [N, D]; both networks reshape with the dataset's
``image_shape`` and accept any leading batch dimensions (particles × data points), or images
[B, C, H, W] as a user's data gives them.
:class:`ConvEncoder` is the feature network the amortized guides put their heads on.
"""

from __future__ import annotations

import torch
from torch import nn

from .vae import VAE

CHANNELS = (32, 64, 128)


def conv_fits(image_shape) -> bool:
    """Whether three stride-2 convolutions and their mirror reproduce images of this shape."""
    _, h, w = image_shape
    return h % 8 == 0 and w % 8 == 0


def checked_image_shape(data):
    """The data's image shape, if the convolutional VAE fits it; else one sentence."""
    from ppl_vae.errors import UsageError

    if not conv_fits(data.image_shape):
        _, h, w = data.image_shape
        raise UsageError(f"--model conv-vae needs image sides that are multiples of 8, got {h}x{w}; "
                         f"pad the images with --pad 32.")
    return data.image_shape


def check_shape(image_shape) -> None:
    if not conv_fits(image_shape):
        raise ValueError(f"image sides must be multiples of 8 (pad them), got {tuple(image_shape)}")


class ConvEncoder(nn.Module):
    """h_φ(x): three stride-2 3×3 convolutions with 32, 64, 128 channels, flattened."""

    def __init__(self, image_shape):
        super().__init__()
        check_shape(image_shape)
        c, h, w = image_shape
        self.image_shape = tuple(image_shape)
        layers, n_in = [], c
        for n_out in CHANNELS:
            layers += [nn.Conv2d(n_in, n_out, 3, stride=2, padding=1), nn.ReLU()]
            n_in = n_out
        self.net = nn.Sequential(*layers, nn.Flatten())
        self.out_features = CHANNELS[-1] * (h // 8) * (w // 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.shape[-1] == self.image_shape[0] * self.image_shape[1] * self.image_shape[2]
        lead = x.shape[:-1] if flat else x.shape[:1]  # [..., D] vectors, or [B, C, H, W] images as given
        return self.net(x.reshape(-1, *self.image_shape)).reshape(*lead, self.out_features)


class ConvDecoder(nn.Module):
    """f_θ(z): the encoder's mirror, a linear map to 128×H/8×W/8 and three transposed convolutions."""

    def __init__(self, latent_dim: int, image_shape):
        super().__init__()
        c, h, w = image_shape
        self.start = (CHANNELS[-1], h // 8, w // 8)
        self.x_dim = c * h * w
        self.linear = nn.Linear(latent_dim, CHANNELS[-1] * (h // 8) * (w // 8))
        layers = []
        for n_in, n_out in zip(CHANNELS[::-1], (*CHANNELS[-2::-1], c)):
            layers += [nn.ReLU(), nn.ConvTranspose2d(n_in, n_out, 3, stride=2, padding=1, output_padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-1]
        out = self.net(self.linear(z).reshape(-1, *self.start))
        return out.reshape(*lead, self.x_dim)


class ConvVAE(VAE):
    """:class:`VAE` with the convolutional decoder in place of the MLP."""

    @classmethod
    def from_config(cls, config, data):
        return cls(checked_image_shape(data), config.pair.latent_dim, config.pair.likelihood)

    def __init__(self, image_shape, latent_dim: int = 8, likelihood: str = "bernoulli"):
        check_shape(image_shape)
        c, h, w = image_shape
        super().__init__(c * h * w, latent_dim, hidden=(), likelihood=likelihood)
        self.decoder = ConvDecoder(latent_dim, image_shape)
