#!/usr/bin/env python3
"""Your own SVI loop with this project's estimators as drop-in Pyro losses (``ppl_vae.infer``).

The pair is written the way Pyro's ``examples/vae/vae.py`` writes it — the decoder registered in the
model, the encoder in the guide, the latent site called ``latent`` and the observed one ``obs`` — and
trained by a plain ``pyro.infer.SVI`` loop with ``DReG`` (or any loss of ``ppl_vae.infer``); then
``ppl_vae.evaluate`` estimates its test log-likelihood.

    python scripts/examples/svi_loop.py --loss DReG --particles 5 --epochs 20
"""

import argparse

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI
from pyro.optim import Adam
from torch import nn

import ppl_vae
from ppl_vae import infer
from ppl_vae.evaluation.evaluate import describe


class VAE(nn.Module):
    def __init__(self, x_dim: int, z_dim: int = 8, hidden: int = 200):
        super().__init__()
        self.x_dim, self.z_dim = x_dim, z_dim
        self.decoder = nn.Sequential(nn.Linear(z_dim, hidden), nn.Softplus(), nn.Linear(hidden, x_dim))
        self.encoder = nn.Sequential(nn.Linear(x_dim, hidden), nn.Softplus(), nn.Linear(hidden, 2 * z_dim))

    def model(self, x):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("latent", dist.Normal(x.new_zeros(self.z_dim), 1.0).to_event(1))
            pyro.sample("obs", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x.reshape(-1, self.x_dim))

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            loc, log_scale = self.encoder(x.reshape(-1, self.x_dim)).chunk(2, -1)
            pyro.sample("latent", dist.Normal(loc, log_scale.exp()).to_event(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loss", default="DReG", choices=infer.__all__, help="a loss of ppl_vae.infer")
    parser.add_argument("--particles", type=int, default=5, help="num_particles K")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    pyro.set_rng_seed(args.seed)
    data = ppl_vae.data.load("digits", binarize="dynamic")
    vae = VAE(data.x_dim)
    svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-3}), loss=getattr(infer, args.loss)(num_particles=args.particles))
    for epoch in range(args.epochs):
        x = data.train_epoch(epoch)  # a fresh binarization each epoch
        order = torch.randperm(x.shape[0])
        total = sum(svi.step(x[order[i:i + args.batch_size]]) for i in range(0, x.shape[0], args.batch_size))
    print(f"{args.loss}(num_particles={args.particles}) in a plain SVI loop, {args.epochs} epochs: last epoch's "
          f"training loss {total / x.shape[0]:.2f} nats per example")
    print(describe(ppl_vae.evaluate(vae, vae, data.x_test, particles=1000)))


if __name__ == "__main__":
    main()
