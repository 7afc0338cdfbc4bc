"""Plates nested inside the data plate, as lda.py nests its words inside its documents: the nesting is read from
the program (as Pyro guesses max_plate_nesting), and particles go left of every plate.

Each document n has one latent z_n ~ N(0, 1) and W words x_{n,w} ~ N(z_n, σ²), observed in
``pyro.plate("words")`` inside ``pyro.plate("documents")``, the data laid out [words, documents] as lda.py
lays it. log p(x_n) is Gaussian with covariance σ²I + 11ᵀ; with the exact posterior as guide,
q(z_n | x_n) = N(Σ_w x_{n,w} / (W + σ²), σ² / (W + σ²)), every importance weight is p(x_n).
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from ppl_vae import Dataset, check, evaluate, fit

N, W, SIGMA = 9, 4, 0.7


def model(x):
    with pyro.plate("documents", x.shape[0]):
        z = pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))
        with pyro.plate("words", W):
            pyro.sample("x", dist.Normal(z, SIGMA), obs=x.transpose(0, 1))


def guide(x):
    with pyro.plate("documents", x.shape[0]):
        precision = W + SIGMA ** 2
        pyro.sample("z", dist.Normal(x.sum(-1) / precision, SIGMA / math.sqrt(precision)))


def exact_log_px(x):
    cov = SIGMA ** 2 * torch.eye(W, dtype=x.dtype) + torch.ones(W, W, dtype=x.dtype)
    return dist.MultivariateNormal(x.new_zeros(W), cov).log_prob(x)


def data(seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(N, 1, generator=g, dtype=torch.float64)
    return z + SIGMA * torch.randn(N, W, generator=g, dtype=torch.float64)


def test_evaluate_and_every_weighted_bound_are_exact_with_words_nested_in_documents():
    x = data()
    result = evaluate(model, guide, x, particles=6)
    assert result["test_nll"] == pytest.approx(-exact_log_px(x).mean().item(), abs=1e-9)


def test_check_and_fit_read_the_nesting_from_the_program():
    x = data().float()
    table = check(model, guide, Dataset.from_tensors(x, x), names=["elbo", "iwae", "dreg", "rws", "stl"])
    assert set(table.values()) == {"ok"}, table
    for objective in ("iwae", "elbo"):  # each trained by its recorded (JIT) step, Pyro's for elbo
        history = fit(model, guide, Dataset.from_tensors(x, x), objective, particles=3, epochs=1, batch_size=N,
                      progress=False, device="cpu")
        # nothing to train: the test bound is the exact log p(x) (float32)
        assert history[0]["test_bound"] == pytest.approx(exact_log_px(x.double()).mean().item(), rel=1e-5)
