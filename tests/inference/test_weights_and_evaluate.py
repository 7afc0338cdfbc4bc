"""Log weights, bounds and the importance-sampled log-likelihood against PPCA's exact answers."""

import math

import pytest
import torch

from helpers import exact_guide, small_ppca
from ppl_vae.guides.linear import LinearGaussian
from ppl_vae.evaluation.evaluate import draws, evaluate, per_point
from ppl_vae.inference.chunks import MAX_ELEMENTS, chunk_sizes
from ppl_vae.inference.weights import elbo_bound, iwae_bound, log_weights


def perturbed_guide(ppca, shift=0.5, scale=1.6):
    """q = N(A x + b + shift, (scale L)(scale L)ᵀ): in the exact family, but wrong."""
    g = exact_guide(ppca)
    with torch.no_grad():
        g.b += shift
        g.log_diag += math.log(scale)
        g.lower *= scale
    return g


def test_exact_posterior_gives_log_marginal_with_zero_variance():
    ppca = small_ppca()
    x = ppca.marginal().sample((8,))
    lw = log_weights(ppca.model, exact_guide(ppca).guide, x, particles=16)
    exact = ppca.log_marginal(x)
    assert lw.shape == (16, 8)
    torch.testing.assert_close(lw, exact.expand(16, 8), atol=1e-10, rtol=0)
    torch.testing.assert_close(iwae_bound(lw), exact, atol=1e-10, rtol=0)


def test_elbo_estimate_matches_closed_form_within_standard_error():
    ppca = small_ppca()
    x = ppca.marginal().sample((5,))
    guide = perturbed_guide(ppca)
    lw = log_weights(ppca.model, guide.guide, x, particles=20000).detach()
    q = guide.dist(x)
    exact = ppca.elbo(x, q.loc, q.covariance_matrix).detach()
    se = lw.std(0) / math.sqrt(lw.shape[0])
    assert ((elbo_bound(lw) - exact).abs() < 4 * se).all()
    assert (exact < ppca.log_marginal(x).detach() - 0.1).all()  # the perturbation matters


def test_iwae_bound_increases_with_k_toward_log_marginal():
    ppca = small_ppca()
    x = ppca.marginal().sample((50,))
    guide = perturbed_guide(ppca)
    exact = ppca.log_marginal(x).mean().item()
    bounds = []
    for k in (1, 10, 100, 1000):
        b = torch.stack([iwae_bound(log_weights(ppca.model, guide.guide, x, particles=k)).detach()
                         for _ in range(20)])  # 20 replicates per data point
        bounds.append((b.mean().item(), b.mean(1).std().item() / math.sqrt(20)))
    for (lo, se_lo), (hi, se_hi) in zip(bounds, bounds[1:]):
        assert hi > lo - 4 * math.hypot(se_lo, se_hi)
    assert bounds[-1][0] <= exact + 4 * bounds[-1][1]
    assert exact - bounds[-1][0] < 0.2 * (exact - bounds[0][0])  # most of the gap is closed at K = 1000


def test_evaluate_is_exact_with_the_exact_posterior_and_chunked():
    ppca = small_ppca()
    x = ppca.marginal().sample((13,))
    # 35 elements: chunks of 7 particles over single points, so both loops run several times
    # a plain function, not the module with its closed form, so that importance sampling runs
    result = evaluate(lambda x: ppca.model(x), exact_guide(ppca), x, particles=30, max_elements=35)
    assert result["estimate"] == "importance-sampled"
    exact = ppca.log_marginal(x).detach()
    assert result["test_nll"] == pytest.approx(-exact.mean().item(), abs=1e-9)
    assert result["test_elbo"] == pytest.approx(exact.mean().item(), abs=1e-9)
    assert result["test_nll_se"] == pytest.approx(exact.std().item() / math.sqrt(13), rel=1e-6)
    assert result["particles"] == 30 and result["n"] == 13
    closed_form = evaluate(ppca, exact_guide(ppca), x, particles=30)  # the module: its exact log p(x)
    assert closed_form["estimate"] == "exact" and closed_form["test_nll"] == pytest.approx(result["test_nll"], abs=1e-9)


def test_is_estimate_lies_between_elbo_and_log_marginal():
    ppca = small_ppca()
    x = ppca.marginal().sample((200,))
    elbo, ll = per_point(ppca.model, perturbed_guide(ppca).guide, x, particles=500)
    exact = ppca.log_marginal(x).detach()
    diff = ll - elbo
    assert diff.mean() > 4 * diff.std() / math.sqrt(200)  # IS beats the ELBO on average
    gap = exact - ll
    assert gap.mean() > -4 * gap.std() / math.sqrt(200)  # and stays below log p(x) within error


def test_chunk_sizes_respect_the_budget():
    n, k = chunk_sizes(10000, 784, 5000)
    assert k * n * 784 <= MAX_ELEMENTS and k >= 1 and n >= 1
    assert chunk_sizes(3, 2, 4) == (3, 4)
    assert chunk_sizes(13, 5, 30, max_elements=35) == (1, 7)


def test_diagonal_linear_guide_is_a_valid_guide():
    g = LinearGaussian(4, 2, full_cov=False)
    d = g.dist(torch.randn(3, 4))
    assert d.batch_shape == (3,) and d.event_shape == (2,)


def test_monte_carlo_standard_errors_match_the_spread_of_independent_repeats():
    """The variances of the ELBO (exact: Var_k log w / K) and of log p̂_K (delta method), per point, against
    the variance of 200 independent repeats. Both sides are noisy: the prediction comes from one draw of
    100 particles (relative error ≈ √(2/99) per point, more with the weights' kurtosis), the repeats'
    variance ≈ √(2/199); averaged over 20 points the ratio's standard error is about 0.05, and 4 of them
    allow ±0.2 (the delta method's first-order bias is inside that here; the weights are mild)."""
    ppca = small_ppca()
    x = ppca.marginal().sample((20,))
    guide = perturbed_guide(ppca, shift=0.3, scale=1.3)
    predicted = draws(ppca.model, guide.guide, x, particles=100)
    repeats = [draws(ppca.model, guide.guide, x, particles=100) for _ in range(200)]
    for name in ("elbo", "log_px"):
        seen = torch.stack([getattr(r, name) for r in repeats]).var(0)
        ratio = (getattr(predicted, f"{name}_var") / seen).mean().item()
        assert abs(ratio - 1) < 0.2, (name, ratio)
    result = evaluate(lambda x: ppca.model(x), guide, x, particles=100)
    assert result["test_nll_mc_se"] == pytest.approx(predicted.log_px_var.sum().sqrt().item() / 20, rel=0.3)
    assert result["test_nll_mc_se"] < result["test_nll_se"]  # here the spread over points dominates
