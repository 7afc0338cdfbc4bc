"""The convolutional and two-stochastic-layer VAEs, and the continuous-Bernoulli likelihood."""

import pytest
import json

import pyro
import torch

import helpers

from helpers import run_cli
from ppl_vae.models.conv_vae import ConvEncoder, ConvVAE
from ppl_vae.models.vae import VAE
from ppl_vae import data, fit, registry
from ppl_vae.inference.chunks import bound
from ppl_vae.inference.weights import elbo_bound


def bounds_before_and_after(config, dataset, epochs):
    """The test ELBO of the initial networks, and after each epoch of training."""
    config = helpers.config(**config)
    pyro.set_rng_seed(0)
    model, guide = registry.build(config, dataset)
    initial = bound(model.model, guide.guide, dataset.x_test, elbo_bound).mean().item()
    history = fit(model, guide, dataset, epochs=epochs, lr=3e-3, progress=False)
    return model, [initial] + [m["test_bound"] for m in history]


def test_conv_networks_mirror_each_other_over_any_batch_shape():
    enc = ConvEncoder((1, 32, 32))
    assert enc.out_features == 128 * 4 * 4
    assert enc(torch.rand(5, 1024)).shape == (5, 2048)
    vae = ConvVAE((1, 32, 32), latent_dim=3)
    assert vae.decoder(torch.randn(4, 5, 3)).shape == (4, 5, 1024)  # particles × points
    assert vae.decode(torch.randn(2, 3)).shape == (2, 1024) and vae.latent_dim == 3
    convs = [m for m in enc.net if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [(32, (3, 3), (2, 2)), (64, (3, 3), (2, 2)),
                                                                         (128, (3, 3), (2, 2))]


def test_conv_vae_trains_on_padded_digits():
    padded = data.load("digits", pad=16)  # 32 works the same (the shapes test above), at four times the cost
    padded.x_train, padded.x_test = padded.x_train[:500], padded.x_test[:100]  # five steps
    model, bounds = bounds_before_and_after({"model": "conv-vae", "latent_dim": 4}, padded, epochs=1)
    assert isinstance(model, ConvVAE) and padded.x_dim == 256
    assert bounds[-1] > bounds[0] + 1.0, bounds


def test_two_layer_vae_is_the_papers_network_and_trains(digits):
    config = {"preset": "iwae2"}
    model, guide = registry.build(helpers.config(**config), data.Dataset.from_tensors(torch.rand(4, 784)))
    widths = lambda net: [m.out_features for m in net if isinstance(m, torch.nn.Linear)]  # noqa: E731
    assert widths(guide.q1.body) + [guide.q1.head.out_features] == [200, 200, 2 * 100]
    assert widths(guide.q2.body) + [guide.q2.head.out_features] == [100, 100, 2 * 50]
    assert widths(model.top.body) + [model.top.head.out_features] == [100, 100, 2 * 100]
    assert widths(model.decoder) == [200, 200, 784] and model.latent_dim == 50
    assert model.decode(torch.randn(3, 50)).shape == (3, 784)
    small = {**config, "latent_dim": 4, "z1_dim": 8, "hidden": [32], "hidden2": [16]}
    _, bounds = bounds_before_and_after(small, digits, epochs=2)
    assert bounds[-1] > bounds[0] + 1.0, bounds


@pytest.mark.slow
def test_two_layer_vae_under_vectorized_particles_estimates_what_one_particle_does(digits):
    """K particles broadcast through both stochastic layers: the K-particle ELBO (Pyro's vectorized
    particle plate) and its gradient have the 1-particle estimator's mean, within 4 standard errors
    (the gradient by mean z² over its entries, ≈ 1 when the means agree, ≫ 1 for a broadcasting error)."""
    from ppl_vae.inference import objectives
    from ppl_vae.inference.diagnostics import gradient_stats

    config = helpers.config(preset="iwae2", latent_dim=4, z1_dim=8, hidden=[32], hidden2=[16])
    pyro.set_rng_seed(0)
    model, guide = registry.build(config, digits)
    x = digits.x_train[:10]
    stats = {}
    for k, m in ((8, 50), (1, 400)):
        objective = objectives.make("elbo", particles=k)
        pyro.set_rng_seed(1)
        losses = torch.tensor([objective.loss.loss(model.model, guide.guide, x) for _ in range(m)])
        grads = gradient_stats(objective, model.model, guide.guide, x, samples=m)
        stats[k] = (losses.mean(), losses.var() / m, torch.cat([g.mean.reshape(-1) for g in grads]),
                    torch.cat([g.var.reshape(-1) for g in grads]) / m)
    (l8, v8, g8, s8), (l1, v1, g1, s1) = stats[8], stats[1]
    assert abs(l8 - l1) < 4 * (v8 + v1).sqrt()
    moving = (s8 + s1) > 0
    z2 = (g8 - g1)[moving] ** 2 / (s8 + s1)[moving]
    assert moving.sum() > 500 and z2.mean() < 2, z2.mean()


def test_continuous_bernoulli_includes_its_normalizing_constant():
    vae = VAE(6, 2, (8,), likelihood="continuous-bernoulli").double()  # float64: no CPU-dependent rounding
    z, x = torch.randn(4, 2, dtype=torch.float64), torch.rand(4, 6, dtype=torch.float64)
    lam = torch.sigmoid(vae.decoder(z))
    log_c = torch.log(2 * torch.atanh(1 - 2 * lam) / (1 - 2 * lam))  # C(λ), Loaiza-Ganem & Cunningham eq. 7
    expected = (x * lam.log() + (1 - x) * (1 - lam).log() + log_c).sum(-1)
    torch.testing.assert_close(vae.likelihood_dist(z).log_prob(x), expected)
    grid = torch.linspace(0, 1, 20001, dtype=torch.float64)  # and it is a density on [0, 1]
    density = vae.likelihood_dist(z[:1]).base_dist.log_prob(grid[:, None]).exp()
    torch.testing.assert_close(torch.trapezoid(density, grid, dim=0), torch.ones(6, dtype=torch.float64), atol=1e-3, rtol=0)


def test_cli_builds_the_zoo_and_refuses_what_does_not_fit(tmp_path, capsys):
    code, out, err = run_cli(["train", "--out", tmp_path / "conv", "--model", "conv-vae", "--guide", "iaf",
                              "--latent-dim", "2", "--epochs", "1", "--binarize", "none",
                              "--likelihood", "continuous-bernoulli", "--no-progress"], capsys)
    assert code == 0, err
    config = json.loads((tmp_path / "conv" / "config.json").read_text())
    assert config["model"] == "conv-vae" and config["guide"] == "iaf" and config["flow_depth"] == 2
    for argv, expected in ((["--model", "conv-vae", "--pad", "12"], "multiples of 8"),
                           (["--preset", "iwae2", "--guide", "gaussian"], "--guide two-layer")):
        code, _, err = run_cli(["train", "--out", tmp_path / "bad", *argv, "--no-progress"], capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and expected in lines[0], err
        assert not (tmp_path / "bad").exists()
