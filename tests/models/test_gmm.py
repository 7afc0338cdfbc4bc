"""The Gaussian mixture: EM against scikit-learn, SVI with enumeration against EM, recovery, CLI."""

import json
import os
import signal
import warnings

import pyro
import pytest

import helpers
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import normalized_mutual_info_score
from sklearn.mixture import GaussianMixture

from helpers import run_cli
from ppl_vae.guides.empty import Empty
from ppl_vae.models.gmm import GMM, fit_codes
from ppl_vae import data as datasets
from ppl_vae import fit
from ppl_vae.io import checkpoint
from ppl_vae.classical import em
from ppl_vae.evaluation.evaluate import evaluate, per_point
from ppl_vae.run import load as load_run
from helpers import one_line_error

CENTRES = torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]], dtype=torch.float64)
WEIGHTS = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
SCALES = torch.tensor([1.0, 0.5], dtype=torch.float64)  # per-coordinate standard deviations


def clusters(n, seed=0):
    """Three separated Gaussian clusters in 2-D: (x, labels)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.multinomial(WEIGHTS, n, replacement=True, generator=g)
    return CENTRES[labels] + SCALES * torch.randn(n, 2, generator=g, dtype=torch.float64), labels


@pytest.fixture(scope="module")
def digits_deq():
    ds = datasets.load("digits", binarize="none", dequantize=True)
    return ds.train_epoch(0).double(), ds.x_test.double()


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_em_matches_scikit_learn_from_the_same_start(covariance, digits_deq):
    x, x_test = digits_deq
    iterations = 15
    model = GMM(64, 5, covariance).double().init_em(x, torch.Generator().manual_seed(0))
    cov = model.covariances().detach()
    sk = GaussianMixture(5, covariance_type=covariance, max_iter=iterations, tol=0, reg_covar=model.reg_covar,
                         weights_init=model.logits.softmax(0).detach().numpy(),
                         means_init=model.means.detach().numpy(),
                         precisions_init=(torch.linalg.inv(cov) if covariance == "full" else 1 / cov).numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk.fit(x.numpy())
    for _ in range(iterations):
        model.em_step(x)
    with torch.no_grad():
        for data in (x, x_test):
            assert abs(model.log_marginal(data).mean().item() - sk.score(data.numpy())) < 1e-3
        assert (model.responsibilities(x_test).argmax(1).numpy() == sk.predict(x_test.numpy())).all()


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_svi_with_enumeration_reaches_em(covariance):
    x, _ = clusters(600)
    by_em = GMM(2, 3, covariance).double().init_em(x, torch.Generator().manual_seed(0))
    by_svi = GMM(2, 3, covariance).double()
    by_svi.load_state_dict(by_em.state_dict())
    em.fit(by_em, Empty(), x, "em", epochs=500, tol=1e-12, progress=False)
    # the guide samples nothing, so TraceEnum_ELBO is log p(x) exactly: full-batch gradient ascent
    history = fit(by_svi, Empty(), x, "enum", epochs=150, batch_size=600, lr=0.05, progress=False)
    with torch.no_grad():
        best = by_em.log_marginal(x).mean().item()
        assert abs(by_svi.log_marginal(x).mean().item() - best) < 1e-3
        assert history[-1]["train_bound"] == pytest.approx(best, abs=1e-3)


def test_em_recovers_the_clusters_up_to_permutation():
    n = 4000
    x, labels = clusters(n, seed=1)
    model = GMM(2, 3, "diag").double().init_em(x, torch.Generator().manual_seed(0))
    em.fit(model, Empty(), x, "em", epochs=300, tol=1e-10, progress=False)
    match = torch.cdist(CENTRES, model.means.detach()).argmin(1)  # component that sits on each true centre
    assert sorted(match.tolist()) == [0, 1, 2]
    weights = model.logits.softmax(0).detach()[match]
    assert ((weights - WEIGHTS).abs() < 4 * (WEIGHTS * (1 - WEIGHTS) / n).sqrt()).all()
    se_means = SCALES / (WEIGHTS[:, None] * n).sqrt()
    assert ((model.means.detach()[match] - CENTRES).abs() < 4 * se_means).all()
    # MAP assignments by Pyro's infer_discrete are the argmax responsibilities and find the labels
    assignments = model.map_assignments(x)
    assert torch.equal(assignments, model.responsibilities(x).argmax(1))
    inverse = torch.empty(3, dtype=torch.long)
    inverse[match] = torch.arange(3)
    assert (inverse[assignments] == labels).double().mean() > 0.98


def test_importance_sampling_is_exact_for_the_enumerated_mixture():
    x, _ = clusters(100)
    model = GMM(2, 3).double().init_em(x, torch.Generator().manual_seed(0))
    elbo, log_px = per_point(model.model, Empty().guide, x, particles=4)
    exact = model.log_marginal(x).detach()
    assert log_px.mean().item() == pytest.approx(exact.mean().item(), abs=1e-9)
    assert elbo.mean().item() == pytest.approx(exact.mean().item(), abs=1e-9)
    result = evaluate(model, Empty(), x, particles=4)  # which evaluate reports as exact, from the closed form
    assert result["estimate"] == "exact" and result["test_nll"] == pytest.approx(-exact.mean().item(), abs=1e-12)


def test_gmm_on_the_latent_codes_of_a_trained_vae(digits):
    from ppl_vae.guides.gaussian import DiagonalGaussian
    from ppl_vae.models.vae import VAE

    vae, encoder = VAE(64, 2, [64]), DiagonalGaussian(64, 2, [64])
    fit(vae, encoder, digits, epochs=10, lr=3e-3, progress=False)
    with torch.no_grad():
        codes = encoder(digits.x_train)[0]
    gmm = fit_codes(codes, components=10)
    one = fit_codes(codes, components=1)
    with torch.no_grad():
        assert gmm.log_marginal(codes).mean() > one.log_marginal(codes).mean()
    # the clusters of the 2-D codes carry information about the digit (0 would be chance)
    assert normalized_mutual_info_score(digits.y_train.numpy(), gmm.map_assignments(codes).numpy()) > 0.3


# -- the command line ---------------------------------------------------------------------

FAST = ["--model", "gmm", "--dequantize", "--components", "3", "--no-progress"]


@pytest.mark.parametrize("method", ["em", "svi"])
def test_cli_writes_the_same_run_directory_as_the_vae(method, tmp_path, capsys):
    out = tmp_path / method
    code, stdout, err = run_cli(["train", "--out", out, "--method", method, "--epochs", "2", *FAST], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    assert all(set(r) == {"epoch", "step", "train_bound", "test_bound", "seconds", "lr"} for r in rows)
    config = json.loads((out / "config.json").read_text())
    assert (config["guide"], config["objective"], config["components"]) == ("empty", "enum", 3)

    run = load_run(str(out), "cpu")
    with torch.no_grad():  # the test bound is exact: the assignment is summed out
        assert run.model.log_marginal(run.data.x_test).mean().item() == pytest.approx(rows[-1]["test_bound"],
                                                                                     abs=1e-3)
    pyro.set_rng_seed(0)
    code, stdout, err = run_cli(["evaluate", out, "--particles", "5"], capsys)
    assert code == 0, err
    assert json.loads((out / "eval.json").read_text())["test_nll"] == pytest.approx(-rows[-1]["test_bound"],
                                                                                    abs=1e-3)


class Killed(BaseException):
    """Stands for SIGKILL: the iteration in progress never finishes and nothing more is written."""


@pytest.mark.parametrize("stop", ["finished", "SIGINT", "SIGTERM", "killed"])
def test_em_resumes_where_it_stopped(stop, tmp_path, capsys, monkeypatch):
    """After a finished, a signalled or a killed EM run, --resume ends where a straight run ends."""
    args = ["--method", "em", "--tol", "1e-12", *FAST]
    straight = tmp_path / "straight"
    assert run_cli(["train", "--out", straight, "--epochs", "4", *args], capsys)[0] == 0

    out, em_step = tmp_path / "run", GMM.em_step

    def third_iteration_interrupted(self, x):
        if self.em_iterations == 2:
            if stop == "killed":
                raise Killed
            os.kill(os.getpid(), getattr(signal, stop))
        self.em_iterations += 1
        return em_step(self, x)

    if stop == "finished":
        assert run_cli(["train", "--out", out, "--epochs", "2", *args], capsys)[0] == 0
    else:
        monkeypatch.setattr(GMM, "em_iterations", 0, raising=False)
        monkeypatch.setattr(GMM, "em_step", third_iteration_interrupted)
        if stop == "killed":
            with pytest.raises(Killed):
                run_cli(["train", "--out", out, "--epochs", "4", *args], capsys)
        else:
            code, _, err = run_cli(["train", "--out", out, "--epochs", "4", *args], capsys)
            assert code == 128 + getattr(signal, stop)
            assert f"stopped by {stop} after EM iteration 3; checkpoint saved" in err and "--resume" in err
        monkeypatch.undo()
        saved = 2 if stop == "killed" else 3  # a kill loses only the iteration in progress
        assert checkpoint.load(out / "checkpoint.pt")["epoch"] == saved
    code, _, err = run_cli(["train", "--resume", out, "--epochs", "4", "--no-progress"], capsys)
    assert code == 0, err
    resumed = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rows = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in resumed] == [1, 2, 3, 4]
    assert [r["train_bound"] for r in resumed] == pytest.approx([r["train_bound"] for r in rows], abs=1e-5)


def test_cli_bad_input(tmp_path, capsys):
    for argv, words in [
        (["--components", "0"], "integer ≥ 1"),
        (["--components", "5000"], "exceeds the 1500 training points"),
        (["--method", "closed-form"], "--method closed-form is not available for the gmm model"),
        (["--binarize", "dynamic"], "--binarize none"),
        (["--binarize", "static", "--dequantize"], "--binarize none"),
        (["--guide", "gaussian"], "--guide empty --objective enum"),
        (["--objective", "elbo"], "--guide empty --objective enum"),
    ]:
        code, _, err = run_cli(["train", "--out", tmp_path / "x", "--model", "gmm", "--no-progress", *argv], capsys)
        assert words in one_line_error(code, err), err
        assert not (tmp_path / "x" / "checkpoint.pt").exists()


def test_config_with_no_components_is_refused():
    from ppl_vae import registry
    from ppl_vae.errors import UsageError

    with pytest.raises(UsageError, match="--components must be at least 1"):
        registry.check(helpers.config(model="gmm", components=0, method="em"))
    with pytest.raises(ValueError, match="at least one component"):
        GMM(2, 0)


@pytest.mark.slow
def test_latent_gmm_example_draws_the_clusters(tmp_path, capsys):
    import subprocess
    import sys
    from pathlib import Path

    run = tmp_path / "z2"
    assert run_cli(["train", "--out", run, "--latent-dim", "2", "--hidden", "32", "--epochs", "2",
                    "--no-progress"], capsys)[0] == 0
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "scripts/examples/latent_gmm.py", str(run), "--components", "3"],
                          capture_output=True, text=True, cwd=root)
    assert done.returncode == 0, done.stderr
    assert "NMI with the digit labels" in done.stdout and (run / "latent_gmm.png").stat().st_size > 0
