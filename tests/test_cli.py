import json
import subprocess
import sys

import pytest
import torch

from conftest import run_cli
from ppl_vae import checkpoint

FAST = ["--epochs", "2", "--hidden", "32", "--latent-dim", "2", "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run directory trained by the CLI, shared by the tests that only read it."""
    from ppl_vae.cli import main

    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", "--out", str(out), *FAST]) == 0
    return out


def one_line_error(code, err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


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


def bad_inputs(tmp_path, trained):
    not_run = tmp_path / "empty"
    not_run.mkdir()
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for name in ("config.json", "checkpoint.pt"):
        (corrupt / name).write_bytes((trained / name).read_bytes())
    (corrupt / "checkpoint.pt").write_bytes(b"\x80\x02garbage")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_bytes((trained / "config.json").read_bytes())
    torch.save({"state_dict": {}}, foreign / "checkpoint.pt")
    blocked = tmp_path / "file"
    blocked.write_text("a file where a folder should be")
    return [
        (["train", "--out", tmp_path / "x", "--dataset", "cifar"], "invalid choice"),
        (["train", "--out", tmp_path / "x", "--objective", "magic"], "invalid choice"),
        (["train", "--out", tmp_path / "x", "--particles", "0"], "integer ≥ 1"),
        (["train", "--out", tmp_path / "x", "--hidden", "2x"], "comma-separated"),
        (["train", "--out", tmp_path / "x", "--lr", "-1"], "number > 0"),
        (["train", "--out", tmp_path / "x", "--device", "tpu"], "invalid choice"),
        (["train", "--out", tmp_path / "x", "--dataset", "mnist", "--data-dir", tmp_path / "nodata"], "--download"),
        (["train", "--out", blocked / "run"], "cannot create"),
        (["train", "--out", trained], "already holds a run"),
        (["train", "--resume", not_run], "not a ppl-vae run directory"),
        (["train"], "required"),
        (["evaluate", tmp_path / "missing"], "does not exist"),
        (["evaluate", not_run], "not a ppl-vae run directory"),
        (["evaluate", corrupt], "corrupt"),
        (["evaluate", foreign], "not a ppl-vae checkpoint"),
        (["evaluate", trained, "--particles", "-3"], "integer ≥ 1"),
    ]


def test_every_bad_input_is_one_sentence_and_exit_2(tmp_path, trained, capsys):
    before = {p.name: p.read_bytes() for p in trained.iterdir() if p.is_file()}
    for argv, expected in bad_inputs(tmp_path, trained):
        code, _, err = run_cli(argv, capsys)
        line = one_line_error(code, err)
        assert expected in line, (argv, line)
    assert not (tmp_path / "corrupt" / "eval.json").exists()
    after = {p.name: p.read_bytes() for p in trained.iterdir() if p.is_file()}
    assert after == before  # nothing already written was touched


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_refused(tmp_path, capsys):
    code, _, err = run_cli(["train", "--out", tmp_path / "r", "--device", "cuda"], capsys)
    assert "--device cpu" in one_line_error(code, err)


def test_console_entry_point_help_and_error():
    help_ = subprocess.run([sys.executable, "-m", "ppl_vae", "train", "--help"], capture_output=True, text=True)
    assert help_.returncode == 0 and "(default: digits)" in help_.stdout and "--resume" in help_.stdout
    bad = subprocess.run([sys.executable, "-m", "ppl_vae", "evaluate", "/nonexistent/run"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "does not exist" in bad.stderr
