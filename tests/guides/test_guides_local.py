"""The non-amortized guide: row-local steps, and refinement to the exact optimum of PPCA."""

import pyro
import pytest
import torch

from helpers import small_ppca
from ppl_vae.guides.local import LR_FACTOR, LocalGaussian
from ppl_vae.models.vae import VAE
from ppl_vae import Dataset
from ppl_vae.errors import UsageError
import helpers


def trainer(x, guide, **kw):
    return helpers.trainer(VAE(x.shape[1], 2, (8,)), guide, Dataset.from_tensors(x), **{"epochs": 1, "batch_size": 10,
                                                                                       "lr": 1e-2, **kw})


def test_a_step_moves_only_the_rows_of_its_batch():
    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((40, 12), 0.3))
    guide = LocalGaussian(40, 2)
    t = trainer(x, guide)
    first, second = torch.arange(0, 10), torch.arange(10, 20)
    before = guide.loc.detach().clone(), guide.raw_scale.detach().clone()
    t.train_step(x[first], first)
    after_first = guide.loc.detach().clone(), guide.raw_scale.detach().clone()
    t.train_step(x[second], second)  # the first batch's rows carry Adam momentum now: it must not move them
    after_second = guide.loc.detach().clone(), guide.raw_scale.detach().clone()
    for lr in (1e-2, 1e-3):  # the table trains at LR_FACTOR × the run's rate: as created, and after set_lr
        rates = t.optim.rates()
        assert rates["local$$$loc"] == pytest.approx(lr * LR_FACTOR)
        assert rates["decoder$$$decoder.0.weight"] == pytest.approx(lr)
        t.set_lr(1e-3)
    for old, mid, new in zip(before, after_first, after_second):
        assert (mid[first] != old[first]).all() and torch.equal(mid[10:], old[10:])
        assert (new[second] != mid[second]).all()
        assert torch.equal(new[first], mid[first]) and torch.equal(new[20:], old[20:])


def test_refinement_reaches_the_best_diagonal_gaussian_of_ppca():
    """For PPCA the ELBO of q = N(m, diag s²) is maximized by m = posterior mean and
    s² = 1 / diag(posterior precision); refining from the prior must get there."""
    ppca = small_ppca(seed=3)
    x = ppca.marginal().sample((8,))
    pyro.set_rng_seed(0)
    q = LocalGaussian(8, 2).double()
    tol = 0.01
    history = q.refine(ppca.model, x, particles=20, lr=0.05, max_steps=4000, tol=tol)
    A, b, cov = ppca.posterior_params()
    loc, scale = q.rows(None, 8)
    best_scale = torch.linalg.inv(cov).diagonal().rsqrt()
    torch.testing.assert_close(loc.detach(), x @ A.T + b, atol=0.02, rtol=0)
    torch.testing.assert_close(scale.detach(), best_scale.expand(8, 2), atol=0.02, rtol=0)
    exact = ppca.elbo(x, loc.detach(), torch.diag_embed(scale.detach() ** 2))
    optimum = ppca.elbo(x, x @ A.T + b, torch.diag(best_scale ** 2))
    assert (optimum - exact).min() >= 0  # the closed-form optimum is one: no q beats it
    assert (optimum - exact).max() < tol  # converged: within the tolerance refinement stops at
    assert len(history) >= 2 and history[-1] > history[0]


def test_the_table_is_only_for_its_own_points():
    q = LocalGaussian(5, 2)
    with pytest.raises(UsageError, match="its own 5 data points, not for new ones"):
        q.dist(torch.zeros(3, 4))
    assert q.dist(torch.zeros(2, 4), torch.tensor([0, 4])).batch_shape == (2,)
