"""PPCA fitted in closed form, by EM and by SVI, against an independent numpy computation."""

import json
import math

import numpy as np
import pyro
import pytest
import torch

from helpers import run_cli
from ppl_vae.guides.linear import LinearGaussian
from ppl_vae.models.ppca import PPCA
from ppl_vae import fit
from ppl_vae.classical import em
from ppl_vae.evaluation.evaluate import per_point
from ppl_vae.run import load as load_run
from helpers import one_line_error

D, Q = 6, 2


def synthetic(n, seed=0, sigma=0.5):
    """Data from a known PPCA: W with well-separated singular values, μ, σ."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(D, Q, generator=g, dtype=torch.float64) * torch.tensor([2.0, 1.0], dtype=torch.float64)
    mu = torch.randn(D, generator=g, dtype=torch.float64)
    z = torch.randn(n, Q, generator=g, dtype=torch.float64)
    x = z @ W.T + mu + sigma * torch.randn(n, D, generator=g, dtype=torch.float64)
    return x, W, mu, sigma ** 2


def numpy_mle(x: np.ndarray, q: int):
    """Tipping & Bishop (1999), eqs. 7–8, written again in numpy: (W Wᵀ, μ, σ², max log-likelihood per point)."""
    n, d = x.shape
    mu = x.mean(0)
    S = (x - mu).T @ (x - mu) / n
    lam, U = np.linalg.eigh(S)
    lam, U = lam[::-1], U[:, ::-1]
    sigma2 = lam[q:].mean()
    W = U[:, :q] @ np.diag(np.sqrt(lam[:q] - sigma2))
    C = W @ W.T + sigma2 * np.eye(d)
    loglik = -0.5 * (d * np.log(2 * np.pi) + np.linalg.slogdet(C)[1] + np.trace(np.linalg.solve(C, S)))
    # the same maximum from the eigenvalues alone (Tipping & Bishop, eq. 16 divided by N)
    assert loglik == pytest.approx(-0.5 * (d * np.log(2 * np.pi) + np.log(lam[:q]).sum()
                                           + (d - q) * np.log(sigma2) + d), abs=1e-10)
    return W @ W.T, mu, sigma2, loglik


@pytest.fixture(scope="module")
def data():
    x, *_ = synthetic(600)
    return x


def test_closed_form_matches_numpy(data):
    model = PPCA(D, Q).double().fit_closed_form(data)
    wwt, mu, sigma2, loglik = numpy_mle(data.numpy(), Q)
    np.testing.assert_allclose((model.W @ model.W.T).detach().numpy(), wwt, atol=1e-10)
    np.testing.assert_allclose(model.mu.detach().numpy(), mu, atol=1e-12)
    assert model.sigma.item() ** 2 == pytest.approx(sigma2, rel=1e-10)
    assert model.log_marginal(data).mean().item() == pytest.approx(loglik, abs=1e-10)


def test_em_climbs_to_the_closed_form(data):
    best = PPCA(D, Q).double().fit_closed_form(data).log_marginal(data).mean().item()
    model = PPCA(D, Q).double()
    history = em.fit(model, LinearGaussian(D, Q).double(), data, "em", epochs=2000, tol=1e-10, progress=False)
    bounds = [row["train_bound"] for row in history]
    assert all(b1 >= b0 - 1e-10 for b0, b1 in zip(bounds, bounds[1:])), "EM never decreases log p(x)"
    assert abs(bounds[-1] - best) < 1e-3
    assert bounds[-1] <= best + 1e-9  # nothing beats the maximum


@pytest.mark.slow
def test_svi_with_the_linear_guide_reaches_the_closed_form(data):
    x = data.float()
    best = PPCA(D, Q).fit_closed_form(x).log_marginal(x).mean().item()
    model, guide = PPCA(D, Q), LinearGaussian(D, Q)
    fit(model, guide, x, "elbo", epochs=200, batch_size=100, lr=0.02, progress=False)
    with torch.no_grad():
        assert abs(model.log_marginal(x).mean().item() - best) < 0.05


def test_known_parameters_are_recovered_up_to_rotation():
    n = 20_000
    x, W, _, sigma2 = synthetic(n, seed=1)
    model = PPCA(D, Q).double().fit_closed_form(x)
    # W is identified only up to W R: compare the covariance W Wᵀ it implies. The estimate's
    # error is that of the sample covariance, SE(S_ij) = sqrt((C_ii C_jj + C_ij²) / n).
    C = W @ W.T + sigma2 * torch.eye(D, dtype=torch.float64)
    se = ((C.diagonal()[:, None] * C.diagonal()[None, :] + C ** 2) / n).sqrt()
    error = (model.W @ model.W.T).detach() - W @ W.T
    assert (error.abs() < 4 * se).all(), (error / se).abs().max()
    # σ² is the mean of D − q eigenvalues of S with variance 2σ⁴/n each
    assert abs(model.sigma.item() ** 2 - sigma2) < 4 * sigma2 * math.sqrt(2 / (n * (D - Q)))


def test_constructor_refuses_a_latent_as_large_as_the_data():
    with pytest.raises(ValueError, match="latent_dim < x_dim"):
        PPCA(4, 4)


# -- the command line ---------------------------------------------------------------------

FAST = ["--model", "ppca", "--dequantize", "--latent-dim", "4", "--no-progress"]


@pytest.mark.parametrize("method", ["closed-form", "em", "svi"])
def test_cli_writes_the_same_run_directory_as_the_vae(method, tmp_path, capsys):
    out = tmp_path / method
    code, stdout, err = run_cli(["train", "--out", out, "--method", method, "--epochs", "3", *FAST], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(set(r) == {"epoch", "step", "train_bound", "test_bound", "seconds", "lr"} for r in rows)
    assert len(rows) == (1 if method == "closed-form" else 3)
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == method and config["guide"] == "linear" and config["binarize"] == "none"

    run = load_run(str(out), "cpu")
    assert isinstance(run.model, PPCA) and run.epoch == rows[-1]["epoch"]
    exact = run.model.log_marginal(run.data.x_test).mean().item()
    if method != "svi":  # the test bound is the exact log p(x); the guide is the exact posterior,
        assert exact == pytest.approx(rows[-1]["test_bound"], abs=1e-4)  # so every weight is p(x)
        pyro.set_rng_seed(0)
        elbo, log_px = per_point(run.model.model, run.guide.guide, run.data.x_test, particles=3)
        assert log_px.mean().item() == pytest.approx(exact, abs=1e-3)
        assert elbo.mean().item() == pytest.approx(exact, abs=1e-3)
    code, stdout, err = run_cli(["evaluate", out, "--particles", "10"], capsys)
    assert code == 0 and "test log p(x)" in stdout and "exact" in stdout and "K =" not in stdout, err
    result = json.loads((out / "eval.json").read_text())
    assert result["estimate"] == "exact" and "particles" not in result
    assert result["test_nll"] == pytest.approx(-exact, abs=1e-5)


def test_cli_bad_input(tmp_path, capsys):
    for argv, words in [
        (["--model", "ppca", "--latent-dim", "64", "--method", "closed-form"], "below the data dimension 64"),
        (["--model", "vae", "--method", "em"], "--method em is not available for the vae model"),
        (["--model", "ppca", "--method", "em", "--guide", "gaussian"], "exact posterior"),
        (["--model", "ppca", "--binarize", "dynamic"], "--binarize none"),
        (["--model", "ppca", "--guide", "empty", "--method", "svi"], "--guide empty samples nothing"),
    ]:
        code, _, err = run_cli(["train", "--out", tmp_path / "x", "--no-progress", *argv], capsys)
        assert words in one_line_error(code, err), err
        assert not (tmp_path / "x" / "checkpoint.pt").exists()
