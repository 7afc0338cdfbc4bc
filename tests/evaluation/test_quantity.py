"""The NLL's label names what the weights sum: the model's observed sites and the inputs it conditions on.

Pairs written as Pyro's examples write them: vae.py observes ``"obs"`` with ``x.reshape(-1, D)``;
ss_vae_M2.py observes its label ``obs=ys``; a class-conditional decoder takes y and scores nothing
of it; cvae.py scores the hidden part ``ys`` given the visible ``xs``.
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

from ppl_vae import evaluate
from ppl_vae.evaluation.evaluate import describe

N, D, Z, C = 5, 4, 2, 3


class Pair(nn.Module):
    def __init__(self, style):
        super().__init__()
        self.style = style
        self.decoder, self.encoder = nn.Linear(Z + C, D), nn.Linear(D, 2 * Z)

    def model(self, xs, ys=None):
        pyro.module("pair", self)
        with pyro.plate("data", xs.shape[0]):
            zs = pyro.sample("z", dist.Normal(xs.new_zeros(Z), 1.0).to_event(1))
            if self.style == "joint":  # ss_vae_M2.py: the label is scored
                ys = pyro.sample("y", dist.OneHotCategorical(xs.new_ones(C) / C), obs=ys)
            cond = ys if ys is not None else xs.new_zeros(xs.shape[0], C)
            logits = self.decoder(torch.cat([zs, cond.expand(*zs.shape[:-1], C)], -1))
            if self.style == "cvae":  # the hidden part ys is scored, the visible xs only conditions
                pyro.sample("y", dist.Bernoulli(logits=logits[..., :C]).to_event(1), obs=ys)
            elif self.style == "cvae_part":  # a value computed from ys (cvae.py observes ys[xs == -1])
                pyro.sample("y", dist.Bernoulli(logits=logits[..., :2]).to_event(1), obs=ys[:, :2])
            else:
                pyro.sample("obs", dist.Bernoulli(logits=logits).to_event(1), obs=xs.reshape(-1, D))

    def guide(self, xs, ys=None):
        with pyro.plate("data", xs.shape[0]):
            loc, log_scale = self.encoder(xs.reshape(-1, D)).chunk(2, -1)
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


@pytest.mark.parametrize("style, with_labels, quantity, observed", [
    ("plain", False, "log p(x)", {"obs": "the data x"}),
    ("joint", True, "log p(x, y)", {"y": "the input ys", "obs": "the data x"}),
    ("conditional", True, "log p(x | ys)", {"obs": "the data x"}),
    ("cvae", True, "log p(y | x)", {"y": "the input ys"}),
    ("cvae_part", True, "log p(y | x)", {"y": "a value the model computes from its inputs"}),
])
def test_the_nll_is_labelled_with_the_sites_the_model_scores(style, with_labels, quantity, observed):
    g = torch.Generator().manual_seed(0)
    x = torch.bernoulli(torch.full((N, D), 0.5), generator=g)
    ys = nn.functional.one_hot(torch.randint(C, (N,), generator=g), C).float()
    pair = Pair(style)
    result = evaluate(pair, pair, x, particles=3, inputs={"ys": ys} if with_labels else None)
    assert result["quantity"] == quantity and result["observed"] == observed
    assert f"test NLL = −{quantity} " in describe(result)
    if style == "joint":  # p(y) uniform over C classes, whatever z: −log p(x | y) = −log p(x, y) − log C, exactly
        assert result["conditional_quantity"] == "log p(x | y)"
        assert result["test_nll_conditional"] == pytest.approx(result["test_nll"] - math.log(C), abs=1e-5)
        assert "−log p(x | y) " in describe(result)
    else:
        assert "conditional_quantity" not in result


def test_log_p_of_y_is_subtracted_only_where_it_depends_on_no_latent():
    """y ~ Categorical(softmax(z)): p(y) is an integral over z, not known exactly, so only log p(x, y) is given."""
    class Dependent(Pair):
        def model(self, xs, ys=None):
            pyro.module("pair", self)
            with pyro.plate("data", xs.shape[0]):
                zs = pyro.sample("z", dist.Normal(xs.new_zeros(Z), 1.0).to_event(1))
                logits = torch.cat([zs, zs[..., :1]], -1)
                ys = pyro.sample("y", dist.OneHotCategorical(logits=logits), obs=ys)
                pyro.sample("obs", dist.Bernoulli(logits=self.decoder(torch.cat([zs, ys.expand(*zs.shape[:-1], C)], -1))
                                                  ).to_event(1), obs=xs)

    g = torch.Generator().manual_seed(0)
    x = torch.bernoulli(torch.full((N, D), 0.5), generator=g)
    ys = nn.functional.one_hot(torch.randint(C, (N,), generator=g), C).float()
    pair = Dependent("joint")
    result = evaluate(pair, pair, x, particles=3, inputs={"ys": ys})
    assert result["quantity"] == "log p(x, y)" and "conditional_quantity" not in result


@pytest.mark.parametrize("steps, quantity", [(2, "log p(x)"), (1, "log p(obs_0 | x)")])
def test_time_steps_observed_one_site_each_are_the_data_when_together_they_are_all_of_it(steps, quantity):
    """dmm.py observes mini_batch[:, t - 1, :] at each time step: all of them together are x."""
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(D), 1.0).to_event(1))
            for t in range(steps):
                pyro.sample(f"obs_{t}", dist.Normal(z, 1.0).to_event(1), obs=x[:, t, :])

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x.new_zeros(D), 1.0).to_event(1))

    result = evaluate(model, guide, torch.randn(N, 2, D), particles=10)
    assert result["quantity"] == quantity
