"""Enumeration the user asks for in the guide, as ss_vae_M2.py asks for it: ``config_enumerate`` on the guide.

``elbo`` and ``enum`` then train Pyro's TraceEnum_ELBO, which sums q(y | x)'s values instead of sampling y:

    L(x) = Σ_y q(y | x) [log p(y) + log p(z_y) + log p(x | y, z_y) − log q(y | x) − log q(z_y | x, y)],

with one z_y ~ q(z | x, y) drawn per value of y. Checked here by hand on the draws the loss made; every
other objective refuses the pair with one sentence, naming only objectives that accept it.
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import config_enumerate
from torch import nn
from torch.distributions import Bernoulli, Categorical, Normal

from ppl_vae.data import Dataset
from ppl_vae.inference import checks, objectives
from ppl_vae.pair import callables

N, D, Z, C = 6, 5, 2, 3


class SSVAE(nn.Module):
    """M2 as ss_vae_M2.py writes it: one module registered in model and guide, y enumerated in the guide."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.encoder_y = nn.Linear(D, C)
        self.encoder_z = nn.Linear(D + C, 2 * Z)
        self.decoder = nn.Linear(Z + C, D)

    def onehot(self, y):
        return nn.functional.one_hot(y, C).float()

    def model(self, xs):
        pyro.module("ss_vae", self)
        with pyro.plate("data", xs.shape[0]):
            ys = pyro.sample("y", dist.OneHotCategorical(xs.new_ones(C) / C))
            zs = pyro.sample("z", dist.Normal(xs.new_zeros(Z), 1.0).to_event(1))
            batch = torch.broadcast_shapes(zs.shape[:-1], ys.shape[:-1])
            logits = self.decoder(torch.cat([zs.expand(*batch, Z), ys.expand(*batch, C)], -1))
            pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=xs)

    @config_enumerate
    def guide(self, xs):
        pyro.module("ss_vae", self)
        with pyro.plate("data", xs.shape[0]):
            ys = pyro.sample("y", dist.OneHotCategorical(logits=self.encoder_y(xs)))
            batch = torch.broadcast_shapes(xs.shape[:-1], ys.shape[:-1])
            loc, log_scale = self.encoder_z(torch.cat([xs.expand(*batch, D), ys.expand(*batch, C)], -1)).chunk(2, -1)
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


def data():
    x = torch.bernoulli(torch.full((N, D), 0.4, dtype=torch.float32), generator=torch.Generator().manual_seed(0))
    return Dataset.from_tensors(x, x)


def test_elbo_and_enum_sum_over_the_guides_values_as_traceenum_elbo_does():
    pair, ds = SSVAE(), data()
    x, (model, guide) = ds.x_train, callables(pair.model, pair.guide)
    for name in ("elbo", "enum"):
        objective = checks.prepared(objectives.make(name), model, guide, ds, {}).objective
        recorded = poutine.trace(guide)
        loss = objective.loss.loss(model, recorded, x)
        ys, zs = (recorded.trace.nodes[site]["value"] for site in ("y", "z"))
        assert ys.shape == (C, 1, C) and zs.shape == (C, N, Z)  # every value of y, one z for each

        log_qy = Categorical(logits=pair.encoder_y(x)).log_prob(torch.arange(C)[:, None])  # [C, N]
        loc, log_scale = pair.encoder_z(torch.cat([x.expand(C, N, D), ys.expand(C, N, C)], -1)).chunk(2, -1)
        log_qz = Normal(loc, log_scale.exp()).log_prob(zs).sum(-1)
        log_p = (math.log(1 / C) + Normal(0.0, 1.0).log_prob(zs).sum(-1)
                 + Bernoulli(logits=pair.decoder(torch.cat([zs, ys.expand(C, N, C)], -1))).log_prob(x).sum(-1))
        by_hand = (log_qy.exp() * (log_p - log_qy - log_qz)).sum()
        assert loss == pytest.approx(-by_hand.item(), rel=1e-5), name  # float32: ~30 terms summed in another order


def test_every_other_objective_refuses_the_guides_enumeration_in_one_sentence():
    pair = SSVAE()
    table = checks.check(pair.model, pair.guide, data())
    assert table["elbo"] == table["enum"] == "ok", table
    for name in ("elbo-analytic", "score", "iwae", "renyi", "rws", "stl", "dreg"):
        assert table[name].startswith("refused: guide site 'y' is marked for enumeration"), (name, table[name])
        assert "use elbo or enum" in table[name]


def test_figures_of_e_x_given_z_refuse_a_model_that_would_draw_y_at_random_inside():
    from ppl_vae.errors import UsageError
    from ppl_vae.evaluation import latents

    with pytest.raises(UsageError, match="has latent site 'y' besides 'z', which p\\(x \\| z\\) would draw at random"):
        latents.decode(SSVAE(), torch.zeros(4, Z), D)
