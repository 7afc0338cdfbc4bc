"""Semi-supervised learning with the M2 model of Kingma, Rezende, Mohamed & Welling (2014) on the
digits, 10 % of the training labels kept:

    p_θ(x, y, z) = p(y) p(z) p_θ(x | y, z),   p(y) = Cat(1/10),  p(z) = N(0, I),

with y observed where labelled and summed out exactly where not (``obs_mask`` and
``config_enumerate``: the ``elbo`` objective then trains Pyro's ``TraceEnum_ELBO``), and a guide
q_φ(z | x). The bound per training point is

    labelled:    E_q[log p(x, y, z) − log q(z | x)]            ≤ log p(x, y)
    unlabelled:  E_q[log Σ_y p(x, y, z) − log q(z | x)]        ≤ log p(x)

and the classifier is the model's own posterior, p(y | x) ∝ E_q[p(x, y, z) / q(z | x)], estimated
by importance sampling with K draws of z (the same draws for every class). Unlike the paper's M2,
the guide has no q(y | x) and there is no extra classification loss: the labels teach only through
the likelihood. Printed beside it: scikit-learn's logistic regression on the labelled 10 % alone.

    python scripts/examples/m2.py --epochs 100
"""

from __future__ import annotations

import argparse
import math

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.infer import config_enumerate
from torch import nn

from ppl_vae import Dataset, fit
from ppl_vae import data as datasets
from ppl_vae.inference.weights import log_weights
from ppl_vae.pair import callables

CLASSES = 10


class Decoder(nn.Module):
    """p(y) p(z) p_θ(x | y, z), with y observed where ``labelled`` and enumerated elsewhere."""

    def __init__(self, x_dim: int, z_dim: int = 8, hidden: int = 200):
        super().__init__()
        self.z_dim = z_dim
        self.net = nn.Sequential(nn.Linear(z_dim + CLASSES, hidden), nn.ReLU(), nn.Linear(hidden, x_dim))

    @config_enumerate
    def model(self, x, y, labelled):
        pyro.module("decoder", self)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.z_dim), 1.0).to_event(1))
            y = pyro.sample("y", dist.Categorical(logits=x.new_zeros(CLASSES)), obs=y, obs_mask=labelled)
            label = F.one_hot(y, CLASSES).to(x)  # [classes enumerated, ..., batch, classes] where y is summed out
            shape = torch.broadcast_shapes(z.shape[:-1], label.shape[:-1])
            inputs = torch.cat([z.expand(*shape, -1), label.expand(*shape, -1)], -1)
            pyro.sample("x", dist.Bernoulli(logits=self.net(inputs)).to_event(1), obs=x)


class Encoder(nn.Module):
    """q_φ(z | x) = N(μ_φ(x), diag σ_φ(x)²)."""

    def __init__(self, x_dim: int, z_dim: int = 8, hidden: int = 200):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(x_dim, hidden), nn.ReLU(), nn.Linear(hidden, 2 * z_dim))

    def guide(self, x, y, labelled):
        pyro.module("encoder", self)
        with pyro.plate("data", x.shape[0]):
            loc, log_scale = self.net(x).chunk(2, -1)
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


def make_pair(data):
    return Decoder(data.x_dim), Encoder(data.x_dim)


def semi_supervised(digits: Dataset, fraction: float, seed: int) -> tuple[Dataset, torch.Tensor]:
    """The digits with labels kept for a seeded ``fraction`` of the training points; the others' labels
    are set to 0, so that nothing but the mask could reveal them. The test points are all unlabelled."""
    g = torch.Generator().manual_seed(seed)
    labelled = torch.zeros(digits.x_train.shape[0], dtype=torch.bool)
    labelled[torch.randperm(labelled.numel(), generator=g)[:round(fraction * labelled.numel())]] = True
    n_test = digits.x_test.shape[0]
    train = {"x": digits.x_train, "y": torch.where(labelled, digits.y_train, 0), "labelled": labelled}
    test = {"x": digits.x_test, "y": torch.zeros(n_test, dtype=torch.long), "labelled": torch.zeros(n_test, dtype=torch.bool)}
    data = Dataset.from_tensors(train, test, y_train=digits.y_train, y_test=digits.y_test, name="digits",
                                image_shape=digits.image_shape, binarize=digits.binarize, seed=seed)
    return data, labelled


@torch.no_grad()
def classify(model, guide, x, particles: int = 100, seed: int = 0) -> torch.Tensor:
    """argmax_y of p(y | x) ∝ Σ_k p(x, y, z_k) / q(z_k | x), z_k ~ q(z | x), for every row of x."""
    model, guide = callables(model, guide)
    labelled = torch.ones(x.shape[0], dtype=torch.bool)
    scores = []
    for c in range(CLASSES):
        pyro.set_rng_seed(seed)  # the same z_k for every class: q(z | x) does not depend on y
        y = torch.full((x.shape[0],), c, dtype=torch.long)
        lw = log_weights(model, guide, x, particles=particles, y=y, labelled=labelled)
        scores.append(torch.logsumexp(lw, 0) - math.log(particles))
    return torch.stack(scores, -1).argmax(-1)


def logistic_regression_accuracy(x_train, y_train, x_test, y_test, seed: int) -> float:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=2000, random_state=seed).fit(x_train.numpy(), y_train.numpy())
    return float(clf.score(x_test.numpy(), y_test.numpy()))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description="M2 semi-supervised VAE on the digits with 10% of the labels")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--fraction", type=float, default=0.1, help="share of training labels kept")
    p.add_argument("--particles", type=int, default=100, help="importance samples K of the classifier")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    digits = datasets.load("digits", binarize="dynamic", seed=args.seed)
    data, labelled = semi_supervised(digits, args.fraction, args.seed)
    history = fit(make_pair, data, "elbo", epochs=args.epochs, seed=args.seed, device="cpu")
    predicted = classify(history.model, history.guide, data.x_test, args.particles, args.seed)
    accuracy = (predicted == digits.y_test).float().mean().item()
    baseline = logistic_regression_accuracy(digits.x_train[labelled], digits.y_train[labelled],
                                            digits.x_test, digits.y_test, args.seed)
    result = {"labelled": int(labelled.sum()), "train_points": int(labelled.numel()), "epochs": args.epochs,
              "test_elbo": history[-1]["test_bound"], "m2_accuracy": accuracy, "logreg_accuracy": baseline}
    print(f"{result['labelled']} of {result['train_points']} training labels, {args.epochs} epochs: test ELBO "
          f"{result['test_elbo']:.2f} nats per digit (y summed out); test accuracy M2 {accuracy:.3f} "
          f"(p(y | x), K = {args.particles}), logistic regression on the labelled points alone {baseline:.3f} "
          f"({digits.y_test.numel()} test digits)")
    return result


if __name__ == "__main__":
    main()
