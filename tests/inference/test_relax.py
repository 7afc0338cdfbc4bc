"""RELAX (ppl_vae/inference/objectives/relax.py) on a sigmoid belief network of 4 bits, small enough to sum
over: the exact ELBO's gradient, from ``enum``, is the reference (float64). The estimator is unbiased for θ and
φ whatever its control variate is; its running level alone makes it far more precise than the score function
it corrects, and training the control variate on the estimator's variance more precise still; a resumed run
continues the control variate and its level exactly."""

import json
import math

import pyro
import pytest
import torch

import ppl_vae.run
from helpers import one_line_error, run_cli
from ppl_vae.io import checkpoint
from ppl_vae.pair import callables
from ppl_vae.guides.discrete import BernoulliEncoder
from ppl_vae.inference import objectives
from ppl_vae.inference.diagnostics import gradient_stats, summarize
from ppl_vae.models.discrete import SBN


def small_pair(n=3, seed=0):
    torch.manual_seed(seed)
    model, guide = SBN(6, 4, ()).double(), BernoulliEncoder(6, 4, ()).double()
    x = torch.bernoulli(torch.full((n, 6), 0.4, dtype=torch.float64))
    return model, guide, x


def test_the_gradient_is_unbiased_for_the_exact_elbo():
    model, guide, x = small_pair()
    params = [*model.parameters(), *guide.parameters()]
    pyro.clear_param_store()
    exact = torch.autograd.grad(objectives.make("enum").loss.differentiable_loss(model.model, guide.guide, x), params)
    copies, steps = 200, 50  # each step's gradient: the mean of 200 independent estimates (x repeated)
    loss = objectives.make("relax").loss
    pyro.set_rng_seed(0)
    draws = []
    for _ in range(steps):
        for p in params:
            p.grad = None
        loss.loss_and_grads(model.model, guide.guide, x.repeat(copies, 1))
        draws.append([p.grad / copies for p in params])
    for i, truth in enumerate(exact):
        d = torch.stack([step[i] for step in draws])
        mean, se = d.mean(0), d.std(0) / math.sqrt(steps)
        varies = se > 0  # a pixel that is 0 in every x gives its encoder weight no gradient at all
        assert torch.equal(mean[~varies], truth[~varies])
        assert ((mean - truth).abs()[varies] < 4 * se[varies]).all(), (i, mean, truth, se)
    assert max(t.abs().max().item() for t in exact[len([*model.parameters()]):]) > 1e-2  # φ's gradient is not ~0


@pytest.mark.slow
def test_the_control_variate_makes_it_far_more_precise_than_the_score_function():
    model, guide, x = small_pair(n=20)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    relax = objectives.make("relax")

    def variance(objective):
        return summarize(gradient_stats(objective, model.model, guide.guide, x, samples=100))["guide"]["variance"]

    score, untrained = variance(objectives.make("score")), variance(relax)
    optimizer = torch.optim.Adam(relax.loss.control.parameters(), lr=1e-2)
    for _ in range(150):  # ψ alone, on the estimator's variance; θ and φ stay where they are
        optimizer.zero_grad()
        relax.loss.loss_and_grads(model.model, guide.guide, x)
        optimizer.step()
    trained = variance(relax)
    assert untrained < score / 10, (untrained, score)  # the running level alone: a baseline
    assert trained < untrained / 2, (trained, untrained)  # r_ψ learns how f varies around it


def test_what_it_cannot_estimate_is_refused_in_one_sentence(tmp_path, capsys):
    code, _, err = run_cli(["train", "--model", "vae", "--objective", "relax", "--out", tmp_path / "a"], capsys)
    assert "relax is an estimator for Bernoulli latents, and the guide's site 'z' draws from Normal" in \
        one_line_error(code, err)
    code, _, err = run_cli(["train", "--model", "sbn2", "--latent-dim", "4", "--objective", "relax",
                            "--out", tmp_path / "b"], capsys)
    assert "relax learns one control variate for one site of Bernoulli latents, and the guide samples 2 (b1, b2)" in \
        one_line_error(code, err)


@pytest.mark.slow
def test_a_resumed_run_continues_exactly_and_a_loaded_one_measures_the_trained_estimator(tmp_path, capsys):
    common = ["--model", "sbn", "--latent-dim", "6", "--objective", "relax", "--no-progress"]
    assert run_cli(["train", *common, "--epochs", "3", "--out", tmp_path / "straight"], capsys)[0] == 0
    assert run_cli(["train", *common, "--epochs", "2", "--out", tmp_path / "resumed"], capsys)[0] == 0
    assert run_cli(["train", "--resume", tmp_path / "resumed", "--epochs", "3", "--no-progress"], capsys)[0] == 0
    last = [json.loads((tmp_path / run / "metrics.jsonl").read_text().splitlines()[-1]) for run in
            ("straight", "resumed")]
    assert last[0]["train_bound"] == last[1]["train_bound"] and last[0]["test_bound"] == last[1]["test_bound"]
    # a loaded run's objective reads the trained control variate and level back (what a measured variance is of)
    pyro.clear_param_store()  # as in a fresh process
    loaded = ppl_vae.run.load(tmp_path / "straight", "cpu")
    saved = checkpoint.load(tmp_path / "straight" / "checkpoint.pt")["params"]
    assert torch.equal(pyro.get_param_store()["relax_level"], saved["relax_level"])
    relax = objectives.make("relax")
    relax.loss.loss_and_grads(*callables(loaded.model, loaded.guide), loaded.data.train_epoch(0)[:10])
    for name, value in relax.loss.control.named_parameters():
        assert torch.equal(value, saved[f"relax_control$$${name}"]), name
