"""Evaluation runs the pair's modules in eval mode and puts their modes back, from Python as from a run."""

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from ppl_vae import Dataset, evaluate, fit
from ppl_vae.pair import callables

D, Z = 6, 2


class DropoutVAE(nn.Module):
    """Dropout in the decoder, registered as Pyro's examples register: one pyro.module in the model."""

    def __init__(self):
        super().__init__()
        self.decoder = nn.Sequential(nn.Linear(Z, 16), nn.Dropout(0.5), nn.Linear(16, D))
        self.encoder = nn.Linear(D, 2 * Z)

    def model(self, x):
        pyro.module("vae", self)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(Z), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x)

    def guide(self, x):
        with pyro.plate("data", x.shape[0]):
            loc, log_scale = self.encoder(x).chunk(2, -1)
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


def binary(n, seed):
    return torch.bernoulli(torch.full((n, D), 0.3), generator=torch.Generator().manual_seed(seed))


def test_evaluate_runs_dropout_off_whatever_mode_the_modules_are_in_and_restores_it():
    vae, x = DropoutVAE(), binary(30, 0)
    results = []
    for training, wrapped in ((True, False), (False, False), (True, True)):
        vae.train(training)
        pyro.set_rng_seed(1)
        model, guide = callables(vae, vae) if wrapped else (vae, vae)  # plain callables hold the module in a closure
        results.append(evaluate(model, guide, x, particles=10))
        assert vae.training == training and vae.decoder[1].training == training  # put back
    assert results[0]["test_nll"] == results[1]["test_nll"] == results[2]["test_nll"]


def test_the_trainers_test_bound_is_taken_in_eval_mode_and_training_continues_in_train_mode():
    seen = []

    def make_pair(data):
        vae = DropoutVAE()
        original = vae.model

        def model(x):
            seen.append(vae.decoder[1].training)
            original(x)

        return model, vae.guide

    history = fit(make_pair, Dataset.from_tensors(binary(40, 0), binary(10, 1)), epochs=2, batch_size=20,
                  progress=False, jit=False, device="cpu")
    assert len(history) == 2 and True in seen and False in seen  # training steps in train mode, test bounds in eval
    assert all(isinstance(m["test_bound"], float) for m in history)
