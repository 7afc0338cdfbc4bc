"""Imputation: observed pixels untouched; importance resampling matches PPCA's exact conditional."""

import json
import shutil

import matplotlib.image
import pytest
import torch

from helpers import exact_guide, run_cli, small_ppca
from ppl_vae.evaluation import impute
from ppl_vae.run import load as load_run


def test_masks():
    top = impute.make_mask("top-half", 3, (1, 8, 8)).reshape(3, 8, 8)
    assert top[:, :4].all() and not top[:, 4:].any()
    random = impute.make_mask("random", 200, (1, 8, 8), fraction=0.3, seed=1)
    n = random.numel()
    assert abs(random.float().mean() - 0.3) < 4 * (0.3 * 0.7 / n) ** 0.5


@pytest.mark.parametrize("mask", impute.MASKS)
def test_observed_pixels_stay_unchanged(tiny_run, mask):
    run = load_run(str(tiny_run), "cpu")
    x = run.data.x_test[:25]
    missing = impute.make_mask(mask, 25, run.data.image_shape, seed=3)
    result = impute.impute(run.model, run.guide, run.data, x, missing, particles=50, gibbs_steps=3)
    observed = ~missing
    for key in ("gibbs", "mean"):
        assert torch.equal(result[key][observed], x[observed])
    for completion in result["completions"]:
        assert torch.equal(completion[observed], x[observed])
        assert ((completion[missing] >= 0) & (completion[missing] <= 1)).all()


def test_importance_resampling_recovers_ppcas_exact_conditional_mean():
    """For PPCA, E[x_m | x_o] = μ_m + C_mo C_oo⁻¹ (x_o − μ_o) with C = W Wᵀ + σ² I. The estimate
    must agree within 4 standard errors, se² = Var_{p(z|x_o)}(E[x_m | z]) / ESS; the pair has no
    decode/prior/likelihood_dist methods, so this also checks reading them from traces."""
    torch.manual_seed(0)
    ppca = small_ppca(x_dim=6, latent_dim=2)
    guide = exact_guide(ppca)
    x = ppca.marginal().sample((8,))
    missing = impute.make_mask("random", 8, (1, 1, 6), fraction=0.4, seed=0)
    missing[:, 0], missing[:, 1] = True, False  # at least one missing and one observed pixel
    gibbs = impute.pseudo_gibbs(ppca.model, guide, x, missing, ppca.mu.expand_as(x), steps=3)
    result = impute.importance_resample(ppca.model, guide, x, missing, gibbs, particles=4000)
    with torch.no_grad():
        C = ppca.marginal().covariance_matrix
        W, s2 = ppca.W, ppca.sigma ** 2
        for n in range(8):
            m, o = missing[n], ~missing[n]
            exact = ppca.mu[m] + C[m][:, o] @ torch.linalg.solve(C[o][:, o], x[n, o] - ppca.mu[o])
            post_cov = s2 * torch.linalg.inv(W[o].T @ W[o] + s2 * torch.eye(2, dtype=W.dtype))
            se = ((W[m] @ post_cov @ W[m].T).diagonal() / result["ess"][n]).sqrt()
            assert ((result["mean"][n, m] - exact).abs() < 4 * se).all(), (n, result["mean"][n, m], exact, se)


def test_impute_command_writes_figure_and_errors(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    code, out, err = run_cli(["impute", run, "--mask", "random", "--n", "30", "--particles", "40"], capsys)
    assert code == 0, err
    result = json.loads((run / "impute-random.json").read_text())
    assert result["n"] == 30 and 1 <= result["ess_median"] <= 40
    assert all(0 <= result[k] <= 1 for k in ("mse_importance", "mse_pseudo_gibbs", "mse_train_mean"))
    width, height = impute.SIZE
    assert matplotlib.image.imread(run / result["figure"]).shape[:2] == (round(height * 100), round(width * 100))
    assert "squared error" in out
    code, _, err = run_cli(["impute", run, "--mask", "random", "--fraction", "1.5"], capsys)
    assert code == 2 and "--fraction" in err
