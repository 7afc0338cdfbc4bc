"""The built-in discrete-latent models (models/discrete.py) and their guides (guides/discrete.py): small enough
to sum over every latent state, the exact ELBO per point is the reference for the test bound the trainer
reports; the command line trains, evaluates and reports both; mismatched guides and objectives are refused."""

import itertools
import math

import pyro
import pytest
import torch

from helpers import config, exact_two_layer_elbo, one_line_error, run_cli, two_layer_pair
from ppl_vae import Dataset, registry
from ppl_vae.guides.discrete import BernoulliEncoder, CategoricalEncoder, TwoLayerBernoulli
from ppl_vae.inference import objectives
from ppl_vae.models.discrete import SBN, CategoricalVAE, TwoLayerSBN

X = (torch.rand(40, 6, generator=torch.Generator().manual_seed(0)) < 0.4).double()


def states(model) -> torch.Tensor:
    """Every latent value the model can take: [S, D] bits, or [S, G, C] one-hot categories."""
    if isinstance(model, CategoricalVAE):
        eye = torch.eye(model.categories, dtype=torch.float64)
        return torch.stack([torch.stack([eye[i] for i in idx]) for idx in
                            itertools.product(range(model.categories), repeat=model.groups)])
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=model.latent_dim)), dtype=torch.float64)


def exact_elbo(model, guide, x) -> torch.Tensor:
    """Σ_z q(z | x_n) [log p(z) + log p(x_n | z) − log q(z | x_n)] per point, over all values of z."""
    if isinstance(model, TwoLayerSBN):
        return exact_two_layer_elbo(model, guide, x)
    z = states(model)[:, None]                                                # [S, 1, ...]
    q = guide.dist(x)
    log_q = q.log_prob(z)                                                     # [S, N]
    log_p = model.prior(x).log_prob(z) + model.likelihood_dist(z.expand(-1, x.shape[0], *z.shape[2:])).log_prob(x)
    return (log_q.exp() * (log_p - log_q)).sum(0)


@pytest.mark.parametrize("pair", [
    lambda: (SBN(6, latent_dim=5, hidden=(4,)), BernoulliEncoder(6, latent_dim=5, hidden=(4,))),
    two_layer_pair,
    lambda: (CategoricalVAE(6, groups=2, categories=3, hidden=(4,)), CategoricalEncoder(6, 2, 3, hidden=(4,))),
], ids=["sbn", "sbn2", "cat-vae"])
def test_the_test_bound_is_the_exact_elbo_within_its_standard_error(pair):
    torch.manual_seed(0)
    model, guide = (m.double() for m in pair())
    with torch.no_grad():
        model.decoder[0].weight.mul_(3.0)  # a posterior worth approximating
    exact = exact_elbo(model, guide, X)
    pyro.set_rng_seed(0)
    draws = torch.stack([objectives.make("elbo", particles=50).test_bound(model.model, guide.guide, X)
                         for _ in range(40)])                                  # [40, N]: each a mean of 50 draws
    mean, se = draws.mean(0), draws.std(0) / math.sqrt(draws.shape[0])
    # 40 points at once: 4.5 standard errors keeps the family's false-alarm rate near 3e-4 (Bonferroni)
    assert ((mean - exact).abs() < 4.5 * se).all(), (mean - exact, se)
    assert exact.std() > 0.1  # the points differ: the comparison is per point, not of one constant


@pytest.mark.slow
@pytest.mark.parametrize("argv", [["--preset", "sbn", "--latent-dim", "16"], ["--preset", "sbn2", "--latent-dim", "8"],
                                  ["--preset", "cat-vae", "--latent-dim", "4", "--categories", "5"]],
                         ids=["sbn", "sbn2", "cat-vae"])
def test_the_command_line_trains_evaluates_and_reports_them(argv, tmp_path, capsys):
    out = tmp_path / "run"
    code, printed, err = run_cli(["train", *argv, "--epochs", "2", "--out", out, "--no-progress"], capsys)
    assert code == 0, err
    code, _, err = run_cli(["evaluate", out, "--particles", "50"], capsys)
    assert code == 0, err
    code, _, err = run_cli(["report", out], capsys)
    assert code == 0, err
    report = (out / "report.md").read_text()
    assert (out / "figures" / "reconstructions.png").exists() and (out / "figures" / "latent_means.png").exists()
    if "cat-vae" in argv:  # the default objective, concrete: both numbers say what they are
        assert "train relaxed ELBO of the Concrete-relaxed model" in printed and "| test ELBO of the discrete model" in report


def test_a_guide_or_objective_the_model_cannot_take_is_refused(capsys, tmp_path):
    with pytest.raises(Exception, match="--guide gaussian samples z but --model sbn has latent b"):
        registry.check(config(model="sbn", guide="gaussian"))
    registry.check(config(model="sbn", guide="bernoulli", objective="vimco", particles=2))
    code, _, err = run_cli(["train", "--model", "cat-vae", "--objective", "disarm", "--epochs", "1",
                            "--out", tmp_path / "r"], capsys)
    assert "disarm is an estimator for Bernoulli latents, and the guide's site 'c' draws from OneHotCategorical" \
        in one_line_error(code, err)


def test_the_models_defaults_and_presets():
    sbn = config(model="sbn")
    assert sbn.pair.guide == "bernoulli" and sbn.inference.objective == "disarm"
    sbn2 = config(model="sbn2")
    assert sbn2.pair.guide == "bernoulli2" and sbn2.inference.objective == "disarm"
    cat = config(model="cat-vae")
    assert cat.pair.guide == "categorical" and cat.inference.objective == "concrete"
    data = Dataset.from_tensors(X.float(), X.float())
    built = registry.build(config(preset="sbn"), data)
    assert isinstance(built[0], SBN) and built[0].latent_dim == 200 and len(built[0].decoder) == 1  # linear
    model, guide = registry.build(config(preset="sbn2"), data)[:2]
    assert isinstance(model, TwoLayerSBN) and isinstance(guide, TwoLayerBernoulli) and len(model.decoder) == 1
    assert model.upper.weight.shape == guide.upper[0].weight.shape == (200, 200)
