"""The MMD-VAE objective (InfoVAE, α = 1): its estimator against a hand-written computation."""

import itertools
import math

import pyro
import pytest
import torch
from pyro import poutine

from ppl_vae import fit
from ppl_vae.errors import UsageError
from ppl_vae.inference import objectives
from ppl_vae.inference.objectives.mmd import rbf_mmd2
from helpers import pair


def by_hand(a, b):
    """The unbiased MMD² by explicit sums over pairs, kernel exp(−‖u − v‖² / (2d))."""
    d = a.shape[1]
    k = lambda u, v: math.exp(-float(((u - v) ** 2).sum()) / (2 * d))  # noqa: E731
    n, m = len(a), len(b)
    aa = sum(k(a[i], a[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    bb = sum(k(b[i], b[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    ab = sum(k(a[i], b[j]) for i in range(n) for j in range(m)) / (n * m)
    return aa + bb - 2 * ab


def test_the_u_statistic_matches_explicit_sums_and_is_unbiased():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(7, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64) + 1
    assert rbf_mmd2(a, b).item() == pytest.approx(by_hand(a, b), rel=1e-12)
    # two samples of one distribution: MMD² is 0 in expectation (the U-statistic can be negative)
    same = torch.stack([rbf_mmd2(torch.randn(20, 2, generator=g), torch.randn(20, 2, generator=g)) for _ in range(400)])
    assert abs(same.mean()) < 4 * same.std() / math.sqrt(400)
    shifted = torch.stack([rbf_mmd2(torch.randn(20, 2, generator=g), torch.randn(20, 2, generator=g) + 1)
                           for _ in range(100)])
    assert shifted.mean() > 10 * shifted.std() / math.sqrt(100)


def test_the_loss_is_reconstruction_minus_lambda_b_mmd2_from_the_same_draws(digits):
    model, guide = pair(digits)
    x = digits.x_train[:30].bernoulli(generator=torch.Generator().manual_seed(1))
    loss = objectives.make("mmd", mmd_scale=50.0).loss
    pyro.set_rng_seed(3)
    value = loss.backward(model.model, guide.guide, x)
    pyro.set_rng_seed(3)  # the same draws, in the objective's order: the guide's z, then the prior's
    with torch.no_grad():
        z = poutine.trace(guide.guide).get_trace(x).nodes["z"]["value"]
        zeta = poutine.trace(poutine.block(model.model, hide_types=["param"])).get_trace(x).nodes["z"]["value"]
        reconstruction = model.likelihood_dist(z).log_prob(x).sum()
    expected = -(reconstruction.item() - 50.0 * 30 * by_hand(z.double(), zeta.double()))
    assert value.item() == pytest.approx(expected, rel=1e-5)
    assert all(p.grad is not None for p in model.parameters()) and all(p.grad is not None for p in guide.parameters())


def test_it_trains_and_pulls_the_aggregate_posterior_to_the_prior(digits):
    model, guide = pair(digits)
    x = digits.x_test

    def aggregate_mmd2():
        with torch.no_grad():
            loc, scale = guide(x)
            return rbf_mmd2(loc + scale * torch.randn_like(loc), torch.randn_like(loc)).item()

    torch.manual_seed(0)
    before = aggregate_mmd2()
    history = fit(model, guide, digits, "mmd", epochs=10, progress=False)
    assert history[-1]["test_bound"] > history[0]["test_bound"] + 1.0  # its test ELBO rises
    torch.manual_seed(0)
    assert aggregate_mmd2() < before / 2, (before, aggregate_mmd2())


def test_mini_batches_of_one_point_are_refused(digits):
    with pytest.raises(UsageError, match="at least 2 points"):
        fit(*pair(digits), digits, "mmd", epochs=1, batch_size=1, progress=False)
