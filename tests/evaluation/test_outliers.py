"""Outlier scores: AUROC against scikit-learn, out-of-distribution images shaped like the run's."""

import json
import shutil
from dataclasses import replace

import matplotlib.image
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from helpers import run_cli
from ppl_vae.evaluation import latents
from ppl_vae.evaluation import outliers
from ppl_vae.errors import UsageError
from ppl_vae.run import load as load_run


@pytest.mark.parametrize("seed", range(4))
def test_auroc_matches_scikit_learn_with_ties(seed):
    rng = np.random.RandomState(seed)
    s_in, s_out = rng.randint(0, 8, size=50 + seed), rng.randint(2, 10, size=40)  # many ties
    expected = roc_auc_score(np.r_[np.zeros(len(s_in)), np.ones(len(s_out))], np.r_[s_in, s_out])
    assert outliers.auroc(s_in, s_out) == pytest.approx(expected, abs=1e-12)


def test_fit_shape_averages_larger_images_and_pads_smaller_ones():
    big = torch.rand(3, 1, 16, 16)
    small = outliers.fit_shape(big, (1, 8, 8)).reshape(3, 8, 8)
    blocks = big.reshape(3, 8, 2, 8, 2).mean((2, 4))
    assert torch.allclose(small, blocks)
    padded = outliers.fit_shape(torch.ones(2, 1, 4, 4), (1, 8, 8)).reshape(2, 8, 8)
    assert padded.sum() == 2 * 16 and (padded[:, 2:6, 2:6] == 1).all()
    with pytest.raises(UsageError, match="channel"):
        outliers.fit_shape(big, (3, 8, 8))


def test_out_of_distribution_sets_look_like_the_data(digits, tiny_mnist):
    flipped = outliers.ood_images("flipped", digits, n=5)
    assert torch.equal(flipped.reshape(5, 8, 8), digits.x_test[:5].reshape(5, 8, 8).flip(1))
    noise = outliers.ood_images("noise", digits, n=400)
    assert set(noise.unique().tolist()) <= {0.0, 1.0} and noise.shape == (400, 64)
    assert abs(noise.mean() - digits.x_test.mean()) < 4 * 0.5 / (400 * 64) ** 0.5
    mnist = outliers.ood_images("mnist", digits, n=50, data_dir=str(tiny_mnist))
    assert mnist.shape == (10, 64) and set(mnist.unique().tolist()) <= {0.0, 1.0}  # the tiny set has 10
    with pytest.raises(UsageError, match="run's own dataset"):
        outliers.ood_images("mnist", replace(digits, name="mnist"), n=5)


def test_outliers_command_scores_and_draws(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    code, out, err = run_cli(["outliers", run, "--ood", "flipped", "--n", "40", "--particles", "10"], capsys)
    assert code == 0, err
    result = json.loads((run / "outliers-flipped.json").read_text())
    assert result["n_in"] == result["n_out"] == 40 and 0 <= result["auroc_kl"] <= 1
    width, height = outliers.SIZE
    assert matplotlib.image.imread(run / result["figure"]).shape[:2] == (round(height * 100), round(width * 100))
    loaded = load_run(str(run), "cpu")
    kl_in = latents.kl_per_point(loaded.model, loaded.guide, loaded.data.x_test[:40])
    assert result["kl_in_mean"] == pytest.approx(kl_in.mean().item(), rel=1e-5)  # analytic: no noise
    assert f"AUROC {result['auroc_kl']:.3f}" in out


def test_missing_dataset_files_fail_with_one_sentence(tiny_run, tmp_path, capsys):
    code, _, err = run_cli(["outliers", tiny_run, "--ood", "fashion-mnist", "--data-dir", tmp_path], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "were not found" in err
    assert not list(tiny_run.glob("outliers-*"))
