import pyro
import torch

import helpers
from pyro import poutine

from ppl_vae.guides.gaussian import DiagonalGaussian
from ppl_vae.models.vae import VAE
from ppl_vae import data, registry


def sites(trace):
    return {name: site for name, site in trace.nodes.items()
            if site["type"] == "sample" and name != "data"}


def test_vae_and_encoder_share_sites_inside_the_data_plate():
    x = torch.bernoulli(torch.full((7, 64), 0.3))
    vae, enc = VAE(64, latent_dim=3, hidden=(16,)), DiagonalGaussian(64, latent_dim=3, hidden=(16,))
    guide_tr = poutine.trace(enc.guide).get_trace(x)
    model_tr = poutine.trace(poutine.replay(vae.model, trace=guide_tr)).get_trace(x)
    assert set(sites(guide_tr)) == {"z"}
    assert set(sites(model_tr)) == {"z", "x"}
    for site in [*sites(model_tr).values(), *sites(guide_tr).values()]:
        assert [f.name for f in site["cond_indep_stack"]] == ["data"]
    assert guide_tr.nodes["z"]["value"].shape == (7, 3)
    assert guide_tr.nodes["z"]["fn"].has_rsample
    assert model_tr.nodes["x"]["is_observed"] and model_tr.nodes["x"]["fn"].event_shape == (64,)
    loc, scale = enc(x)
    assert loc.shape == scale.shape == (7, 3) and (scale > 0).all()


def test_gaussian_likelihood_and_decoder_mean():
    vae = VAE(64, latent_dim=2, hidden=(8,), likelihood="gaussian")
    z = torch.randn(5, 2)
    lik = vae.likelihood_dist(z)
    assert lik.batch_shape == (5,) and lik.event_shape == (64,)
    assert (lik.base_dist.scale > 0).all()
    probs = VAE(64, latent_dim=2, hidden=(8,)).decode(z)
    assert ((probs > 0) & (probs < 1)).all()


def test_iwae_preset_is_the_papers_network():
    ds = data.Dataset.from_tensors(torch.rand(4, 784))
    model, guide = registry.build(helpers.config(preset="iwae"), ds)
    enc_sizes = [m.out_features for m in guide.body if isinstance(m, torch.nn.Linear)] + [guide.head.out_features]
    dec_sizes = [m.out_features for m in model.decoder if isinstance(m, torch.nn.Linear)]
    assert enc_sizes == [200, 200, 2 * 50]  # loc and scale heads of the 50-d latent
    assert dec_sizes == [200, 200, 784]
    assert isinstance(guide.body[1], torch.nn.Tanh)


def test_vectorized_particles_broadcast_through_model_and_guide():
    x = torch.bernoulli(torch.full((6, 64), 0.5))
    vae, enc = VAE(64, latent_dim=3, hidden=(16,)), DiagonalGaussian(64, latent_dim=3, hidden=(16,))
    with pyro.plate("particles", 4, dim=-2):
        guide_tr = poutine.trace(enc.guide).get_trace(x)
        model_tr = poutine.trace(poutine.replay(vae.model, trace=guide_tr)).get_trace(x)
    assert guide_tr.nodes["z"]["value"].shape == (4, 6, 3)
    assert model_tr.log_prob_sum().isfinite()
