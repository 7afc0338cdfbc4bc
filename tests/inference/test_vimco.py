"""VIMCO (Mnih & Rezende 2016) on a discrete latent whose K-particle bound is computed exactly by summing over
every K-tuple of values: the average of VIMCO's gradients equals the exact gradient of the IWAE bound L_K in
θ and φ, within four standard errors of the mean (float64)."""

import itertools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from ppl_vae.errors import UsageError
from ppl_vae.inference import objectives
from ppl_vae.inference.objectives.vimco import VIMCOLoss, leave_one_out

K = 3
X = torch.tensor([0.3, 1.7], dtype=torch.float64)
PRIOR = torch.tensor([0.2, -0.3, 0.1], dtype=torch.float64)


def model(x):
    mu = pyro.param("mu", torch.tensor([-1.0, 0.5, 2.0], dtype=torch.float64))
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Categorical(logits=PRIOR))
        pyro.sample("x", dist.Normal(mu[z], 1.0), obs=x)


def guide(x):
    logits = pyro.param("logits", torch.tensor([[0.5, -0.5, 0.0], [0.0, 0.3, -0.2]], dtype=torch.float64))
    with pyro.plate("data", x.shape[0]):  # x: X, or X repeated (each copy its own draws), as in the test below
        pyro.sample("z", dist.Categorical(logits=logits.repeat(x.shape[0] // len(X), 1)))


def exact_bound(mu, logits) -> torch.Tensor:
    """Σ_n L_K(x_n) = Σ over every K-tuple of values of Π_k q(z_k | x_n) log (1/K) Σ_k w(z_k)."""
    log_q = logits.log_softmax(-1)                                                    # [N, 3]
    log_w = PRIOR.log_softmax(0) + dist.Normal(mu, 1.0).log_prob(X[:, None]) - log_q  # [N, 3]
    total = 0.0
    for values in itertools.product(range(3), repeat=K):
        v = torch.tensor(values)
        total = total + (log_q[:, v].sum(1).exp() * (torch.logsumexp(log_w[:, v], 1) - math.log(K))).sum()
    return total


def test_vimco_gradients_are_unbiased_for_the_iwae_bound():
    """4000 draws of the estimator: 40 steps on X repeated 100 times, each step's gradient over the copies
    the mean of 100 independent draws (the standard error from the 40 means)."""
    copies, steps = 100, 40
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    loss = VIMCOLoss(K)
    loss.loss(model, guide, X)  # creates the parameters
    store = pyro.get_param_store()
    mu, logits = store["mu"], store["logits"]
    exact = torch.autograd.grad(exact_bound(mu, logits), [mu, logits])
    draws = {"mu": [], "logits": []}
    for _ in range(steps):
        loss.loss_and_grads(model, guide, X.repeat(copies))
        for name in draws:
            param = store[name].unconstrained()
            draws[name].append(-param.grad.clone() / copies)  # the loss is −Σ bound, over every copy
            param.grad = None
    for name, truth in zip(draws, exact):
        stacked = torch.stack(draws[name])
        mean, se = stacked.mean(0), stacked.std(0) / math.sqrt(len(stacked))
        assert ((mean - truth).abs() < 4 * se).all(), (name, mean, truth, se)


def test_the_leave_one_out_bound_replaces_each_weight_by_the_others_geometric_mean():
    log_w = torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64)
    found = leave_one_out(log_w)[:, 0]
    expected = [math.log((math.exp(2.0) + math.exp(1.0) + math.exp(3.0)) / 3),
                math.log((1 + math.exp(1.5) + math.exp(3.0)) / 3),
                math.log((1 + math.exp(1.0) + math.exp(0.5)) / 3)]
    assert found.tolist() == pytest.approx(expected, rel=1e-12)


def test_vimco_needs_two_particles():
    with pytest.raises(UsageError, match="needs --particles 2 or more"):
        objectives.make("vimco", particles=1)


def test_the_drop_in_loss_trains_a_discrete_latent_in_a_plain_svi_loop():
    from pyro.infer import SVI
    from pyro.optim import Adam

    from ppl_vae.infer import VIMCO

    pyro.clear_param_store()
    pyro.set_rng_seed(1)
    svi = SVI(model, guide, Adam({"lr": 0.05}), loss=VIMCO(num_particles=K))
    exact = lambda: exact_bound(pyro.param("mu"), pyro.param("logits")).item()  # noqa: E731
    svi.step(X)
    before = exact()
    for _ in range(200):
        svi.step(X)
    assert exact() > before + 0.1  # the exact L_K rose
    with pytest.raises(UsageError, match="num_particles ≥ 2"):
        VIMCO(num_particles=1)
