"""The estimators as drop-in Pyro losses in a plain ``pyro.infer.SVI`` loop, on a pair written as vae.py writes it."""

import runpy

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, config_enumerate
from pyro.optim import Adam
from torch import nn

from helpers import ROOT
from ppl_vae import data as datasets
from ppl_vae.errors import UsageError
from ppl_vae.infer import DReG, IWAE, RWS, STL, Renyi, ScoreFunctionELBO
from ppl_vae.inference.objectives import make


# the pair of scripts/examples/svi_loop.py, written as examples/vae/vae.py writes it: decoder registered in the
# model, encoder in the guide, latent site "latent", observed site "obs"
VAE = runpy.run_path(str(ROOT / "scripts" / "examples" / "svi_loop.py"))["VAE"]


LOSSES = [IWAE(num_particles=5), Renyi(alpha=0.5, num_particles=5), RWS(num_particles=5), STL(num_particles=5),
          DReG(num_particles=5), ScoreFunctionELBO(baseline="avg", num_particles=5)]


@pytest.mark.parametrize("loss", LOSSES, ids=lambda loss: type(loss).__name__)
def test_each_loss_trains_a_vae_in_a_plain_svi_loop(loss):
    x = datasets.load("digits", binarize="static").x_train[:200]
    torch.manual_seed(0)
    vae = VAE(x.shape[1], z_dim=2, hidden=32)
    svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-2}), loss=loss)
    losses = torch.tensor([svi.step(x[i % 4 * 50:(i % 4 + 1) * 50]) for i in range(120)])
    first, last = losses[:20], losses[-20:]
    se = (first.var() / 20 + last.var() / 20).sqrt()  # of the difference of the two windows' means
    assert last.mean() < first.mean() - 4 * se, (first.mean(), last.mean(), se)


def test_vectorize_particles_false_draws_the_particles_one_pass_each_as_pyro_does():
    """A pair written for one particle at a time (the batch indexed by a boolean mask, as cvae.py does) trains
    with vectorize_particles=False, and its loss estimates the same bound as the vectorized one of a pair
    that broadcasts: with the exact posterior of a one-latent model, log w is log p(x) in every pass."""
    x = torch.tensor([[0.3, -1.0, 1.2], [1.0, -1.0, -0.4]])
    keep = x[0] >= 0

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))
            pyro.sample("x", dist.Normal(z[:, None].expand(-1, 3)[:, keep], 1.0).to_event(1), obs=x[:, keep])

    def guide(x):  # z | x ~ N(Σ x / (1 + d), 1 / (1 + d)) over the d = 2 kept values
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x[:, keep].sum(-1) / 3, 3 ** -0.5))

    log_px = dist.MultivariateNormal(torch.zeros(2), torch.eye(2) + 1).log_prob(x[:, keep]).sum()
    with pytest.raises(Exception):  # not broadcastable: z has a particle dimension in front
        IWAE(num_particles=4).loss(model, guide, x)
    assert IWAE(num_particles=4, vectorize_particles=False).loss(model, guide, x) == pytest.approx(-log_px.item(),
                                                                                                  rel=1e-6)


def test_the_drop_in_losses_are_fits_estimators_under_pyros_names():
    x = datasets.load("digits", binarize="static").x_train[:20]
    vae = VAE(x.shape[1])
    for drop_in, name in ((IWAE(num_particles=3), "iwae"), (DReG(num_particles=3), "dreg"),
                          (Renyi(alpha=0.2, num_particles=3), "renyi")):
        pyro.set_rng_seed(4)
        ours = drop_in.loss(vae.model, vae.guide, x)
        pyro.set_rng_seed(4)
        options = {"alpha": 0.2} if name == "renyi" else {}
        assert ours == make(name, particles=3, **options).loss.loss(vae.model, vae.guide, x)


def test_the_drop_in_losses_refuse_what_fit_refuses_in_one_sentence():
    with pytest.raises(UsageError, match="num_particles must be a whole number"):
        DReG(num_particles=0)
    encoder = nn.Linear(6, 4)

    def tied_model(x):  # the decoder computes with the encoder's weights: θ and φ at once
        pyro.module("encoder", encoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=z @ encoder.weight[:2]).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            loc, log_scale = encoder(x).chunk(2, -1)
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))

    def mixture(x):
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Bernoulli(0.5))
            pyro.sample("x", dist.Normal(c[..., None].expand(*c.shape, 6), 1.0).to_event(1), obs=x)

    @config_enumerate
    def enumerating_guide(x):  # as ss_vae_M2.py marks its y
        with pyro.plate("data", x.shape[0]):
            pyro.sample("c", dist.Bernoulli(torch.sigmoid(encoder(x)[..., 0])))

    x = torch.ones(3, 6)
    with pytest.raises(UsageError, match="is used both by the model's log p"):
        SVI(tied_model, guide, Adam({"lr": 1e-3}), loss=DReG(num_particles=2)).step(x)
    with pytest.raises(UsageError, match="guide site 'c' is marked for enumeration"):
        SVI(mixture, enumerating_guide, Adam({"lr": 1e-3}), loss=RWS(num_particles=2)).step(x)
