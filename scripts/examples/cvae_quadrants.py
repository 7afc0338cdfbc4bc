"""The conditional VAE of Pyro's ``examples/cvae`` (Sohn, Lee & Yan 2015) written the way it writes
it, trained by ppl-vae as it stands: one quadrant of a digit is shown, the other three are
predicted,

    p_θ(z | x) = N(μ_θ(x, ŷ(x)), σ_θ(x, ŷ(x))²),   p_θ(y | z) = Bernoulli(g_θ(z)) on the hidden pixels,
    q_φ(z | x, y) = N(μ_φ(x, y), σ_φ(x, y)²),

with x the image whose hidden quadrants are −1, y the image whose shown quadrant is −1, and ŷ a
baseline network trained beforehand (frozen). The constructs are the example's: images in their
own shape [B, 8, 8], a data plate with no size, the whole module registered in the model only
(``pyro.module("generation_net", self)``: the recognition network is the guide's by what it
computes), the likelihood on ``ys[xs == -1]`` (boolean indexing: particles are drawn one pass at
a time) and a guide that falls back to the prior network when ``ys`` is None. The number is of
−log p(y | x), the hidden pixels given the shown quadrant.

    python scripts/examples/cvae_quadrants.py --epochs 20
"""

from __future__ import annotations

import argparse

import pyro
import pyro.distributions as dist
import torch
import torch.nn as nn

from ppl_vae import Dataset, fit
from ppl_vae import data as datasets

SIDE = 8
PIXELS = SIDE * SIDE


class Encoder(nn.Module):
    def __init__(self, z_dim, hidden):
        super().__init__()
        self.fc1, self.fc31, self.fc32 = nn.Linear(PIXELS, hidden), nn.Linear(hidden, z_dim), nn.Linear(hidden, z_dim)

    def forward(self, x, y):
        xc = x.clone()
        xc[x == -1] = y[x == -1]
        hidden = torch.relu(self.fc1(xc.view(-1, PIXELS)))
        return self.fc31(hidden), torch.exp(self.fc32(hidden))


class Decoder(nn.Module):
    def __init__(self, z_dim, hidden):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, PIXELS), nn.Sigmoid())

    def forward(self, z):
        return self.net(z)


class BaselineNet(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(PIXELS, hidden), nn.ReLU(), nn.Linear(hidden, PIXELS), nn.Sigmoid())

    def forward(self, x):
        return self.net(x.view(-1, PIXELS))


class CVAE(nn.Module):
    def __init__(self, z_dim, hidden, pre_trained_baseline_net):
        super().__init__()
        self.baseline_net = pre_trained_baseline_net
        self.prior_net = Encoder(z_dim, hidden)
        self.generation_net = Decoder(z_dim, hidden)
        self.recognition_net = Encoder(z_dim, hidden)

    def model(self, xs, ys=None):
        pyro.module("generation_net", self)
        batch_size = xs.shape[0]
        with pyro.plate("data"):
            with torch.no_grad():
                y_hat = self.baseline_net(xs).view(xs.shape)
            prior_loc, prior_scale = self.prior_net(xs, y_hat)
            zs = pyro.sample("z", dist.Normal(prior_loc, prior_scale).to_event(1))
            loc = self.generation_net(zs)
            if ys is not None:
                mask_loc = loc[(xs == -1).view(-1, PIXELS)].view(batch_size, -1)
                mask_ys = ys[xs == -1].view(batch_size, -1)
                pyro.sample("y", dist.Bernoulli(mask_loc, validate_args=False).to_event(1), obs=mask_ys)
            else:
                pyro.deterministic("y", loc.detach())
            return loc

    def guide(self, xs, ys=None):
        with pyro.plate("data"):
            if ys is None:
                y_hat = self.baseline_net(xs).view(xs.shape)
                loc, scale = self.prior_net(xs, y_hat)
            else:
                loc, scale = self.recognition_net(xs, ys)
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))


def quadrants(images: torch.Tensor) -> dict:
    """xs: the top-left quadrant shown, the rest −1; ys: the image with that quadrant −1 (as the example's data)."""
    shown = torch.zeros(SIDE, SIDE, dtype=torch.bool)
    shown[:SIDE // 2, :SIDE // 2] = True
    images = images.reshape(-1, SIDE, SIDE)
    return {"x": torch.where(shown, images, -1.0), "ys": torch.where(shown, -1.0, images)}


def pretrained_baseline(xs, ys, hidden: int = 64, steps: int = 300) -> BaselineNet:
    """The example's baseline ŷ(x): predicts the hidden pixels by binary cross-entropy, then frozen."""
    net = BaselineNet(hidden)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    hidden_pixels = (xs == -1).view(-1, PIXELS)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = nn.functional.binary_cross_entropy(net(xs)[hidden_pixels], ys.view(-1, PIXELS)[hidden_pixels])
        loss.backward()
        optimizer.step()
    return net.requires_grad_(False)


def make_pair(data):
    net = CVAE(4, 64, pretrained_baseline(data.x_train, data.inputs_train["ys"]))
    return net, net


def digits_quadrants(binarize: str = "static", seed: int = 0) -> Dataset:
    digits = datasets.load("digits", binarize=binarize, seed=seed)
    return Dataset.from_tensors(quadrants(digits.x_train), quadrants(digits.x_test))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description="Pyro's CVAE on the digits: three quadrants from one")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    history = fit(make_pair, digits_quadrants(seed=args.seed), "elbo", epochs=args.epochs, batch_size=50,
                  seed=args.seed, device="cpu")
    result = {k: history[-1][k] for k in ("train_bound", "test_bound")}
    print(result)
    return result


if __name__ == "__main__":
    main()
