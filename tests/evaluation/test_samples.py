"""Samples from a model and the two-sample tests against test images (ppl-vae samples --c2st)."""

import json
import math
import shutil

import torch

from ppl_vae import data as datasets
from ppl_vae.evaluation.samples import c2st, model_samples, pixel_mmd2
from ppl_vae.models.ppca import PPCA
from ppl_vae.models.vae import VAE
from helpers import run_cli


def test_samples_follow_the_model_exactly_where_its_marginal_is_known():
    """PPCA's samples x ~ p(x) = N(μ, W Wᵀ + σ² I): their mean is μ within 4 standard errors per pixel."""
    data = datasets.load("digits", binarize="none")
    ppca = PPCA(64, 4).fit_closed_form(data.x_train)
    template = data.x_train[:1].expand(20000, -1)
    x = model_samples(ppca.model, template)
    assert x.shape == template.shape and x is not template
    sd = ppca.marginal().covariance_matrix.diagonal().sqrt()
    z = (x.mean(0) - ppca.mu) / (sd / math.sqrt(20000))
    assert z.abs().max() < 4.5, z.abs().max()  # 64 pixels: the largest of 64 |N(0, 1)| stays below 4.5
    var = x.var(0) / sd.pow(2)  # each ≈ 1, with relative SE √(2/(n − 1))
    assert ((var - 1).abs() < 4.5 * math.sqrt(2 / 19999)).all()


def test_a_bernoulli_models_samples_are_binary_and_differ_from_the_data():
    x = torch.bernoulli(torch.full((50, 64), 0.3))
    samples = model_samples(VAE(64, 2, (8,)).model, x)
    assert samples.shape == x.shape and set(samples.unique().tolist()) <= {0.0, 1.0} and not torch.equal(samples, x)


def test_c2st_is_chance_for_one_distribution_and_near_one_for_shuffled_pixels():
    data = datasets.load("digits", binarize="static")
    x = data.x_train[:600]
    a, b = x[:300].numpy(), x[300:].numpy()  # two halves of one distribution
    same = c2st(a, b)
    assert abs(same["c2st_accuracy"] - 0.5) < 3 * same["c2st_se"], same
    g = torch.Generator().manual_seed(0)
    shuffled = torch.stack([row[torch.randperm(64, generator=g)] for row in x[300:]]).numpy()
    apart = c2st(a, shuffled)
    assert apart["c2st_accuracy"] > 0.9, apart
    assert pixel_mmd2(x[:300], torch.from_numpy(shuffled))["mmd2"] > 10 * abs(pixel_mmd2(x[:300], x[300:])["mmd2"])


def test_cli_writes_samples_json_and_the_report_shows_it(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    code, out, err = run_cli(["samples", run, "--c2st"], capsys)
    assert code == 0, err
    result = json.loads((run / "samples.json").read_text())
    assert 0 <= result["c2st_accuracy"] <= 1 and result["n"] == 297 and (run / "samples.png").exists()
    assert out.startswith(f"C2ST accuracy {result['c2st_accuracy']:.3f} ± {result['c2st_se']:.3f}"), out
    code, _, err = run_cli(["report", run], capsys)
    assert code == 0, err
    assert "## Sample quality" in (run / "report.md").read_text()
