import json
import subprocess
import sys

import pytest

from helpers import run_cli
from ppl_vae.io import checkpoint

FAST = ["--epochs", "2", "--hidden", "32", "--latent-dim", "2", "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run directory trained by the CLI, shared by the tests that only read it."""
    from ppl_vae.cli import main

    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", "--out", str(out), *FAST]) == 0
    return out


def test_train_then_evaluate(trained, capsys):
    assert {p.name for p in trained.iterdir()} >= {"config.json", "metrics.jsonl", "checkpoint.pt"}
    config = json.loads((trained / "config.json").read_text())
    assert config["hidden"] == [32] and config["likelihood"] == "bernoulli" and config["latent_dim"] == 2
    code, out, err = run_cli(["evaluate", trained, "--particles", "50"], capsys)
    assert code == 0, err
    result = json.loads((trained / "eval.json").read_text())
    assert result["particles"] == 50 and result["epoch"] == 2
    assert result["test_nll"] > 0 and result["test_elbo"] < 0
    assert "test NLL" in out and "eval.json" in out


def test_resume_extends_a_run(trained, tmp_path, capsys):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(trained, run)
    code, out, err = run_cli(["train", "--resume", run, "--epochs", "3", "--no-progress"], capsys)
    assert code == 0, err
    assert "epoch 3" in out
    assert checkpoint.load(run / "checkpoint.pt")["epoch"] == 3


def test_preset_and_explicit_flags(tmp_path, capsys):
    code, _, err = run_cli(["train", "--out", tmp_path / "r", "--preset", "iwae", "--latent-dim", "3",
                            "--epochs", "0", "--no-progress"], capsys)
    assert code == 2 and "no epochs" in err  # zero epochs trains nothing, and says so
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["hidden"] == [200, 200] and config["activation"] == "tanh" and config["latent_dim"] == 3


@pytest.mark.slow
def test_console_entry_point_help_and_error():
    help_ = subprocess.run([sys.executable, "-m", "ppl_vae", "train", "--help"], capture_output=True, text=True)
    assert help_.returncode == 0 and "(default: digits)" in help_.stdout and "--resume" in help_.stdout
    bad = subprocess.run([sys.executable, "-m", "ppl_vae", "evaluate", "/nonexistent/run"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "does not exist" in bad.stderr


def test_a_point_mass_guide_is_never_reported_as_a_bound(tmp_path, capsys):
    out = tmp_path / "delta"
    code, stdout, err = run_cli(["train", "--out", out, "--guide", "delta", *FAST], capsys)
    assert code == 0, err
    assert "not a bound" in stdout and "train bound" not in stdout
    code, stdout, err = run_cli(["evaluate", out, "--particles", "5"], capsys)
    assert code == 0, err
    assert "not a bound" in stdout and "NLL" not in stdout.replace("no NLL", "")
    result = json.loads((out / "eval.json").read_text())
    assert result["estimate"] == "not a bound" and result["bound"] is False and "'z'" in result["reason"]
    assert "test_nll" not in result and "test_elbo" not in result and result["test_objective"] < 0
    code, _, err = run_cli(["report", out], capsys)
    assert code == 0, err
    assert "not a bound" in (out / "report.md").read_text()
