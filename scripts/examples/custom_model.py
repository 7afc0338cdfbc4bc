"""Train and evaluate a model/guide pair you wrote yourself, through the public API.

The model has a heavy-tailed Laplace prior, p(z) = Π_j Laplace(z_j; 0, 1), and a Bernoulli
decoder; the guide is an amortized Laplace encoder, q(z | x) = Π_j Laplace(z_j; μ(x), b(x)).
Neither comes from `models/` or `guides/`: any Pyro model and guide with the same latent
site names (here "z"), data inside pyro.plate("data"), train with `ppl_vae.fit`.

    python scripts/examples/custom_model.py --epochs 20
"""

import argparse

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

import ppl_vae
from ppl_vae.text import count

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--epochs", type=int, default=20)
parser.add_argument("--particles", type=int, default=500, help="importance samples for the test NLL")
args = parser.parse_args()

data = ppl_vae.data.load("digits", binarize="dynamic")
D, Z = data.x_dim, 4
torch.manual_seed(0)
decoder = nn.Sequential(nn.Linear(Z, 128), nn.ReLU(), nn.Linear(128, D))
encoder = nn.Sequential(nn.Linear(D, 128), nn.ReLU(), nn.Linear(128, 2 * Z))


def model(x):
    pyro.module("decoder", decoder)
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Laplace(x.new_zeros(Z), 1.0).to_event(1))
        pyro.sample("x", dist.Bernoulli(logits=decoder(z)).to_event(1), obs=x)


def guide(x):
    pyro.module("encoder", encoder)
    loc, raw_scale = encoder(x).chunk(2, dim=-1)
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Laplace(loc, F.softplus(raw_scale) + 1e-4).to_event(1))


history = ppl_vae.fit(model, guide, data, objective="elbo", epochs=args.epochs, device="cpu")
result = ppl_vae.evaluate(model, guide, data.x_test, particles=args.particles)
print(f"after {count(len(history), 'epoch')}: test ELBO {result['test_elbo']:.2f} ± {result['test_elbo_se']:.2f}, "
      f"test NLL {result['test_nll']:.2f} ± {result['test_nll_se']:.2f} nats per example "
      f"(K = {args.particles})")
