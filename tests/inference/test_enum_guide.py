"""``enum`` sums the guide's discrete latents too, a vector of bits over all its joint values, which Pyro's
``TraceEnum_ELBO`` alone cannot (torch: "Enumeration over cartesian product is not implemented"). On a
two-layer sigmoid belief network of 3 + 3 bits the loss and its gradient are the exact ELBO's, summed by
hand over all 64 states (float64); an exact gradient has no variance; what it cannot sum is refused."""

import re

import pyro
import pyro.distributions as dist
import pytest
import torch

from helpers import exact_two_layer_elbo, one_line_error, run_cli, two_layer_pair
from ppl_vae.data import Dataset
from ppl_vae.errors import UsageError
from ppl_vae.inference import checks, objectives
from ppl_vae.inference.diagnostics import gradient_stats, summarize
from ppl_vae.inference.objectives.enum import JointValues


def small_pair():
    torch.manual_seed(0)
    model, guide = two_layer_pair()
    x = torch.bernoulli(torch.full((5, 6), 0.4, dtype=torch.float64))
    return model.double(), guide.double(), x


@pytest.mark.parametrize("particles", [1, 3])
def test_the_loss_and_its_gradient_are_the_exact_elbos(particles):
    model, guide, x = small_pair()
    pyro.clear_param_store()
    params = [*model.parameters(), *guide.parameters()]
    loss = objectives.make("enum", particles=particles).loss.differentiable_loss(model.model, guide.guide, x)
    exact = -exact_two_layer_elbo(model, guide, x).sum()
    # float64 sums over 64 states: agreement to a few hundred ulps of the values' size
    assert loss.item() == pytest.approx(exact.item(), rel=1e-12)
    for got, want in zip(torch.autograd.grad(loss, params), torch.autograd.grad(exact, params)):
        assert torch.allclose(got, want, rtol=1e-10, atol=1e-12)


def test_an_exact_gradient_has_no_variance():
    model, guide, x = small_pair()
    pyro.clear_param_store()
    enum = summarize(gradient_stats(objectives.make("enum"), model.model, guide.guide, x, samples=5))
    score = summarize(gradient_stats(objectives.make("score"), model.model, guide.guide, x, samples=5))
    assert enum["guide"]["variance"] == 0 and enum["model"]["variance"] == 0
    assert enum["guide"]["snr"] == float("inf")
    assert score["guide"]["variance"] > 0  # the same statistic does see a sampled estimator's noise


@pytest.mark.parametrize("base, values, shape", [
    (dist.Bernoulli(logits=torch.randn(2, 3)), 8, (3,)),
    (dist.OneHotCategorical(logits=torch.randn(2, 2, 3)), 9, (2, 3)),
    (dist.Categorical(logits=torch.randn(2, 2, 3)), 9, (2,)),
])
def test_joint_values_are_every_combination_once_with_probabilities_summing_to_one(base, values, shape):
    joint = JointValues(base, 1)
    support = joint.enumerate_support(expand=False)
    assert support.shape == (values, 1, *shape)
    assert len({tuple(v.flatten().tolist()) for v in support}) == values
    assert joint.enumerate_support().shape == (values, 2, *shape)
    assert torch.allclose(joint.log_prob(support).logsumexp(0), torch.zeros(2), atol=1e-6)


def guide_with(site_dist):
    def guide(x, idx=None):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("b", site_dist(x))
    return guide


def model_with(site_dist):
    def model(x, idx=None):
        with pyro.plate("data", x.shape[0]):
            b = pyro.sample("b", site_dist(x))
            pyro.sample("x", dist.Normal(b.sum(-1, keepdim=True) if b.dim() > 1 else b[..., None], 1.0).to_event(1),
                        obs=x)
    return model


@pytest.mark.parametrize("site, says", [
    (lambda x: dist.Bernoulli(logits=x.new_zeros(13)).to_event(1),
     "site 'b' takes 2^13 joint values, more than the 4096 it sums at most; use elbo"),
    (lambda x: dist.Poisson(x.new_ones(())), "site 'b' draws from Poisson, whose values it cannot list; use elbo"),
])
def test_what_it_cannot_sum_is_refused_in_one_sentence(site, says):
    data = Dataset.from_tensors(torch.randn(4, 1))
    with pytest.raises(UsageError, match=re.escape(says)):
        checks.prepared(objectives.make("enum"), model_with(site), guide_with(site), data, {})


@pytest.mark.slow
def test_the_sigmoid_belief_network_trains_with_enum_and_the_papers_one_is_refused(tmp_path, capsys):
    code, out, err = run_cli(["train", "--model", "sbn", "--latent-dim", "6", "--objective", "enum", "--epochs", "1",
                              "--out", tmp_path / "small", "--no-progress"], capsys)
    assert code == 0, err
    code, out, err = run_cli(["train", "--preset", "sbn", "--objective", "enum", "--out", tmp_path / "big"], capsys)
    assert "site 'b' takes 2^200 joint values" in one_line_error(code, err)
    assert not (tmp_path / "big" / "checkpoint.pt").exists()


class ImageSBN(torch.nn.Module):
    """Written as Pyro's examples write a pair: one module registered in the model only, a data plate named
    "batch", images kept [N, 1, 4, 4]."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.dec, self.enc = torch.nn.Linear(5, 16).double(), torch.nn.Linear(16, 5).double()

    def model(self, x):
        pyro.module("sbn", self)
        with pyro.plate("batch", x.shape[0]):
            b = pyro.sample("b", dist.Bernoulli(x.new_full((5,), 0.3)).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.dec(b).unflatten(-1, (1, 4, 4))).to_event(3), obs=x)

    def guide(self, x):
        with pyro.plate("batch", x.shape[0]):
            pyro.sample("b", dist.Bernoulli(logits=self.enc(x.flatten(-3))).to_event(1))


def test_a_pair_written_as_pyros_examples_write_it_gets_its_exact_elbo():
    import itertools

    pair = ImageSBN()
    x = torch.bernoulli(torch.full((7, 1, 4, 4), 0.3, dtype=torch.float64))
    states = torch.tensor(list(itertools.product([0.0, 1.0], repeat=5)), dtype=torch.float64)[:, None]  # [32, 1, 5]
    log_q = dist.Bernoulli(logits=pair.enc(x.flatten(-3))).log_prob(states).sum(-1)
    log_p = (dist.Bernoulli(torch.full((5,), 0.3, dtype=torch.float64)).log_prob(states).sum(-1)
             + dist.Bernoulli(logits=pair.dec(states).unflatten(-1, (1, 4, 4))).log_prob(x).sum((-3, -2, -1)))
    exact = (log_q.exp() * (log_p - log_q)).sum()
    pyro.clear_param_store()
    loss = objectives.make("enum").loss.differentiable_loss(pair.model, pair.guide, x)
    assert -loss.item() == pytest.approx(exact.item(), rel=1e-12)
