"""A global latent β outside the data plate, written as a user writes it (Pyro's subsampled plate):
the Pyro ELBOs train and report the full-data ELBO per point, which is closed form for this
linear-Gaussian model; the importance-weighted objectives refuse; evaluate reports the ELBO given q(β).

    β ~ N(0, I_D),  z_n ~ N(0, I_d),  x_n ~ N(W z_n + β, σ² I_D);
    q(β) = N(m, diag s²),  q(z_n | x_n) = N(A x_n + b, diag t²).
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from ppl_vae import Dataset, fit
from ppl_vae.errors import UsageError
from ppl_vae.evaluation.evaluate import evaluate
from ppl_vae.inference import objectives
from ppl_vae.pair import callables

N, D, LATENT, SIGMA = 40, 3, 2, 0.5
g = torch.Generator().manual_seed(0)
W, A = torch.randn(D, LATENT, generator=g, dtype=torch.float64), 0.3 * torch.randn(LATENT, D, generator=g, dtype=torch.float64)
B_, T = 0.1 * torch.randn(LATENT, generator=g, dtype=torch.float64), torch.full((LATENT,), 0.6, dtype=torch.float64)
M0, S0 = torch.tensor([0.5, -0.2, 0.1], dtype=torch.float64), torch.full((D,), 0.3, dtype=torch.float64)


def plate(x, idx, size=N):
    return pyro.plate("data", size if idx is not None else x.shape[0], subsample=idx)


def model(x, idx=None, size=N):
    beta = pyro.sample("beta", dist.Normal(x.new_zeros(D), 1.0).to_event(1))
    with plate(x, idx, size):
        z = pyro.sample("z", dist.Normal(x.new_zeros(LATENT), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z @ W.to(x).T + beta, SIGMA).to_event(1), obs=x)


def guide(x, idx=None, size=N):
    m = pyro.param("m", M0.to(x))
    s = pyro.param("s", S0.to(x), constraint=dist.constraints.positive)
    pyro.sample("beta", dist.Normal(m, s).to_event(1))
    with plate(x, idx, size):
        pyro.sample("z", dist.Normal(x @ A.to(x).T + B_.to(x), T.to(x)).to_event(1))


def local_elbo(x, m=M0, s=S0):
    """E_q[log p(x_n | z_n, β) + log p(z_n) − log q(z_n | x_n)] per point, closed form."""
    mu_z = x @ A.T + B_
    resid = x - mu_z @ W.T - m
    expected_sq = (resid ** 2).sum(-1) + (W ** 2 @ T ** 2).sum() + (s ** 2).sum()
    loglik = -0.5 * D * math.log(2 * math.pi * SIGMA ** 2) - expected_sq / (2 * SIGMA ** 2)
    kl_z = 0.5 * ((T ** 2).sum() + (mu_z ** 2).sum(-1) - LATENT - torch.log(T ** 2).sum())
    return loglik - kl_z


def full_elbo_per_point(x, m=M0, s=S0):
    kl_beta = 0.5 * ((s ** 2).sum() + (m ** 2).sum() - D - torch.log(s ** 2).sum())
    return local_elbo(x, m, s).mean() - kl_beta / x.shape[0]


def data(n=N, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, LATENT, generator=gen, dtype=torch.float64) @ W.T + 0.7
            + SIGMA * torch.randn(n, D, generator=gen, dtype=torch.float64))


def test_the_per_point_training_bound_of_elbo_is_the_full_data_elbo_over_n():
    """An epoch of mini-batches, (1/N)·(−loss) per batch averaged, estimates ELBO(all N points)/N."""
    x = data()
    loss = objectives.make("elbo", particles=200).loss
    model_fn, guide_fn = callables(model, guide)
    replicates = []
    for seed in range(30):
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        perm = torch.randperm(N)
        with torch.no_grad():
            replicates.append(sum(-loss.loss(model_fn, guide_fn, x[idx], idx) / N for idx in perm.split(10)) / 4)
    values = torch.tensor(replicates)
    exact = full_elbo_per_point(x).item()
    se = values.std().item() / math.sqrt(len(values))
    assert abs(values.mean().item() - exact) < 4 * se, (values.mean().item(), exact, se)


def test_fit_reports_the_full_data_bound_and_evaluate_the_elbo_given_q_beta():
    pyro.clear_param_store()
    x, x_test = data(), data(30, seed=2)
    history = fit(model, guide, Dataset.from_tensors(x.float(), x_test.float()), "elbo", particles=1000, epochs=1,
                  batch_size=10, lr=1e-9, progress=False, device="cpu")
    assert history[0]["test_bound_given"] == ["beta"]
    # one draw of each estimator; over 30 seeds at K = 100 their standard deviations were 0.44 (train) and
    # 0.61 (test, β shared by the points of a particle), so at K = 1000 four of them are 0.56 and 0.77
    assert abs(history[0]["train_bound"] - full_elbo_per_point(x).item()) < 0.6, history[0]
    assert abs(history[0]["test_bound"] - local_elbo(x_test).mean().item()) < 0.8, history[0]
    result = evaluate(model, guide, x_test.float(), particles=2000)
    assert result["estimate"] == "given global latents" and "test_nll" not in result
    # the same points on both sides, so only Monte Carlo error: 0.61 · (100 / 2000)^½ = 0.14 per draw
    assert abs(result["test_objective"] - local_elbo(x_test).mean().item()) < 4 * 0.14, result


@pytest.mark.parametrize("objective", ["iwae", "dreg", "rws", "stl", "renyi"])
def test_importance_weighted_objectives_refuse_a_global_latent(objective):
    with pytest.raises(UsageError, match="global latent variable, and the .* objective weights particles per data point"):
        fit(model, guide, data().float(), objective, epochs=1, batch_size=10, progress=False, device="cpu")


def test_a_global_latent_needs_the_data_plate_to_know_the_data_set_size():
    def unsubsampled(x, idx=None):
        model(x, None)

    def unsubsampled_guide(x, idx=None):
        guide(x, None)

    with pytest.raises(UsageError, match="the data plate must know the data set's size"):
        fit(unsubsampled, unsubsampled_guide, data().float(), epochs=1, batch_size=10, progress=False, device="cpu")
    with pytest.raises(UsageError, match="says the data set has 100 points and the training set has 40"):
        fit(lambda x, idx=None: model(x, idx, 100), lambda x, idx=None: guide(x, idx, 100), data().float(),
            epochs=1, batch_size=10, progress=False, device="cpu")


def test_a_plate_that_needs_idx_at_test_time_is_refused_before_training():
    """pyro.plate('data', N, subsample=idx) alone builds a plate of N points when the test bound passes
    no idx: refused on two test points, not a shape error after the first epoch."""
    def model_n(x, idx=None):
        beta = pyro.sample("beta", dist.Normal(x.new_zeros(D), 1.0).to_event(1))
        with pyro.plate("data", N, subsample=idx):
            z = pyro.sample("z", dist.Normal(x.new_zeros(LATENT), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ W.to(x).T + beta, SIGMA).to_event(1), obs=x)

    def guide_n(x, idx=None):
        pyro.sample("beta", dist.Normal(M0.to(x), S0.to(x)).to_event(1))
        with pyro.plate("data", N, subsample=idx):
            pyro.sample("z", dist.Normal(x @ A.to(x).T + B_.to(x), T.to(x)).to_event(1))

    with pytest.raises(UsageError, match="fail on two test points, where they get idx=None"):
        fit(model_n, guide_n, Dataset.from_tensors(data().float(), data(10, seed=2).float()), epochs=1,
            batch_size=10, progress=False, device="cpu")


def test_evaluate_finds_a_global_latent_that_only_the_model_samples():
    def prior_guide(x, idx=None, size=N):  # beta comes from the model's prior
        with plate(x, idx, size):
            pyro.sample("z", dist.Normal(x @ A.to(x).T + B_.to(x), T.to(x)).to_event(1))

    result = evaluate(model, prior_guide, data(20, seed=2).float(), particles=50)
    assert result["estimate"] == "given global latents" and result["global_sites"] == ["beta"], result
