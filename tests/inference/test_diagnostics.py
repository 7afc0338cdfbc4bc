"""Gradient diagnostics: means and variances per parameter, SNR per group, against PPCA's exact answers."""

import math

import pyro
import torch

from helpers import exact_guide, small_ppca
from ppl_vae.inference.diagnostics import gradient_stats, summarize
from ppl_vae.inference.objectives import make
from helpers import exact_elbo, flat, setup


def by_group(stats, group):
    return [s for s in stats if s.group == group]


def test_mean_is_the_exact_gradient_and_groups_are_model_and_guide():
    ppca, guide, x = setup()
    stats = gradient_stats(make("elbo", particles=4), ppca, guide, x, samples=200)
    assert {s.name for s in by_group(stats, "guide")} == {f"linear_guide$$${n}" for n, _ in guide.named_parameters()}
    assert {s.name for s in by_group(stats, "model")} == {f"ppca$$${n}" for n, _ in ppca.named_parameters()}
    order = {s.name: s for s in stats}
    mean = flat([order[f"linear_guide$$${n}"].mean for n, _ in guide.named_parameters()]
                + [order[f"ppca$$${n}"].mean for n, _ in ppca.named_parameters()])
    se = flat([order[f"linear_guide$$${n}"].var for n, _ in guide.named_parameters()]
              + [order[f"ppca$$${n}"].var for n, _ in ppca.named_parameters()]).sqrt() / math.sqrt(200)
    _, exact = exact_elbo(ppca, guide, x)
    assert ((mean + exact).abs() < 4 * se).all()  # the estimates are of −∇ Σ_n ELBO
    assert all(p.grad is None for p in [*ppca.parameters(), *guide.parameters()])  # nothing left behind


def test_stl_guide_gradient_has_no_noise_at_the_exact_posterior():
    ppca = small_ppca()
    x = ppca.marginal().sample((6,)).detach()
    guide = exact_guide(ppca)
    summary = summarize(gradient_stats(make("stl", particles=4), ppca, guide, x, samples=20))
    elbo = summarize(gradient_stats(make("elbo", particles=4), ppca, guide, x, samples=20))
    assert summary["guide"]["variance"] < 1e-20 < elbo["guide"]["variance"]
    assert summary["model"]["variance"] > 0 and summary["model"]["size"] == 5 * 2 + 5 + 1


def test_iwae_guide_snr_falls_with_k_and_dreg_repairs_it():
    """Rainforth et al. 2018: the IWAE guide gradient's SNR falls like 1/√K; Tucker et al. 2019: DReG's does not."""
    ppca, guide, x = setup()
    snr = {(name, k): summarize(gradient_stats(make(name, particles=k), ppca, guide, x, samples=100))["guide"]["snr"]
           for name in ("iwae", "dreg") for k in (2, 64)}
    assert snr["iwae", 64] < snr["iwae", 2] / 2
    assert snr["dreg", 64] > 2 * snr["iwae", 64]


def test_running_averages_are_put_back_after_each_estimate():
    """The M estimates leave a score-function baseline's running average as the first, dropped one left it."""
    ppca, guide, x = setup()
    objective = make("score-avg", particles=2)
    objective.loss.loss_and_grads(ppca.model, guide.guide, x)  # creates the running average
    name = "__baseline_avg_downstream_cost_z"
    store = pyro.get_param_store()
    before = store[name].clone()
    after = {}
    for samples in (0, 10):
        store[name] = before.clone()
        pyro.set_rng_seed(1)  # the same first, dropped estimate in both
        stats = gradient_stats(objective, ppca, guide, x, samples=samples)
        after[samples] = store[name].clone()
    assert not torch.equal(after[0], before)
    assert torch.equal(after[10], after[0])
    assert all(s.name != name for s in stats)  # not a parameter anyone optimizes
