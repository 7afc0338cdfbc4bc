"""The semi-supervised VAE (M2, Kingma, Rezende, Mohamed & Welling 2014) written the way Pyro's
``examples/vae/ss_vae_M2.py`` writes it, trained by ppl-vae as it stands:

    p(y) = Cat(1/10),  p(z) = N(0, I),  p_θ(x | y, z) = Bernoulli(f_θ(y, z)),
    q_φ(y | x) = Cat(π_φ(x)),  q_φ(z | x, y) = N(μ_φ(x, y), σ_φ(x, y)²).

One module registered in the model and the guide (``pyro.module("ss_vae", self)``), a data plate
with no size (``pyro.plate("data")``), one-hot labels passed as ``ys`` — ``None`` for an
unlabelled batch, where the guide samples y, enumerated in parallel (``config_enumerate``, so
``elbo`` trains Pyro's ``TraceEnum_ELBO``) — and the auxiliary classification loss
α · −log q_φ(y | x) on labelled batches, a second loss beside the ELBO (``Pair(losses=...)``).

The labels a data set does not have are NaN rows of ``ys``: ppl-vae batches labelled and
unlabelled points apart and calls the program with ``ys=None`` for the unlabelled ones.

    python scripts/examples/ss_vae.py --epochs 20            # the digits, 10 % of the labels
"""

from __future__ import annotations

import argparse

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.infer import Trace_ELBO, config_enumerate
from torch import nn

from ppl_vae import Dataset, Pair, fit
from ppl_vae import data as datasets

CLASSES = 10


def mlp(sizes) -> nn.Sequential:
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out), nn.Softplus()]
    return nn.Sequential(*layers[:-1])


def joined(*parts: torch.Tensor) -> torch.Tensor:
    """The parts concatenated on their last dimension after broadcasting the others (an enumerated y
    has an extra dimension on the left)."""
    shape = torch.broadcast_shapes(*(p.shape[:-1] for p in parts))
    return torch.cat([p.expand(*shape, p.shape[-1]) for p in parts], -1)


class SSVAE(nn.Module):
    def __init__(self, x_dim: int, z_dim: int = 8, hidden: int = 128, aux_loss_multiplier: float = 50.0):
        super().__init__()
        self.z_dim, self.aux_loss_multiplier = z_dim, aux_loss_multiplier
        self.encoder_y = mlp([x_dim, hidden, CLASSES])
        self.encoder_z = mlp([x_dim + CLASSES, hidden, 2 * z_dim])
        self.decoder = mlp([z_dim + CLASSES, hidden, x_dim])

    def model(self, xs, ys=None):
        pyro.module("ss_vae", self)
        batch_size = xs.shape[0]
        with pyro.plate("data"):
            zs = pyro.sample("z", dist.Normal(xs.new_zeros(batch_size, self.z_dim), 1.0).to_event(1))
            ys = pyro.sample("y", dist.OneHotCategorical(logits=xs.new_zeros(batch_size, CLASSES)), obs=ys)
            logits = self.decoder(joined(zs, ys))
            pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=xs)

    def guide(self, xs, ys=None):
        pyro.module("ss_vae", self)
        with pyro.plate("data"):
            if ys is None:
                ys = pyro.sample("y", dist.OneHotCategorical(logits=self.encoder_y(xs)))
            loc, log_scale = self.encoder_z(joined(xs, ys)).chunk(2, -1)
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))

    def model_classify(self, xs, ys=None):
        """The auxiliary loss's model: α · log q_φ(y | x) of the labelled points."""
        pyro.module("ss_vae", self)
        with pyro.plate("data"):
            if ys is not None:
                with pyro.poutine.scale(scale=self.aux_loss_multiplier):
                    pyro.sample("y_aux", dist.OneHotCategorical(logits=self.encoder_y(xs)), obs=ys)

    def guide_classify(self, xs, ys=None):
        pass

    @torch.no_grad()
    def classify(self, xs) -> torch.Tensor:
        return self.encoder_y(xs).argmax(-1)


def classification_loss(model, guide, x, ys=None):
    """Pyro's second SVI loss in ss_vae_M2.py, as one more term of the training loss."""
    if ys is None:
        return 0.0
    return Trace_ELBO().differentiable_loss(model.model_classify, model.guide_classify, x, ys)


def make_pair(data):
    ss_vae = SSVAE(data.x_dim)
    return Pair(ss_vae, config_enumerate(ss_vae.guide, "parallel", expand=True), losses=[classification_loss])


def semi_supervised(digits: Dataset, fraction: float, seed: int = 0) -> Dataset:
    """The digits with one-hot labels ``ys`` for a seeded ``fraction`` of the training points and NaN rows
    for the others; every test point labelled."""
    g = torch.Generator().manual_seed(seed)
    ys = F.one_hot(digits.y_train, CLASSES).float()
    unlabelled = torch.randperm(ys.shape[0], generator=g)[round(fraction * ys.shape[0]):]
    ys[unlabelled] = float("nan")
    return Dataset.from_tensors({"x": digits.x_train, "ys": ys},
                                {"x": digits.x_test, "ys": F.one_hot(digits.y_test, CLASSES).float()},
                                y_train=digits.y_train, y_test=digits.y_test, image_shape=digits.image_shape,
                                binarize=digits.binarize, seed=seed)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description="Pyro's ss_vae_M2 on the digits with 10% of the labels")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    data = semi_supervised(datasets.load("digits", binarize="static", seed=args.seed), args.fraction, args.seed)
    history = fit(make_pair, data, "elbo", epochs=args.epochs, batch_size=50, lr=1e-3, seed=args.seed,
                  device="cpu")
    ss_vae = history.model.program
    accuracy = (ss_vae.classify(data.x_test) == data.y_test).float().mean().item()
    result = {**{k: history[-1][k] for k in ("train_bound", "test_bound", "train_extra_loss")},
              "test_accuracy": accuracy}
    print(result)
    return result


if __name__ == "__main__":
    main()
