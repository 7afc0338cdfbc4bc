"""`ppl-vae baselines`: one table per kind of data, scored exactly where the model allows."""

import csv
import math

import pytest
import torch

from helpers import run_cli
from ppl_vae import data
from ppl_vae.classical import baselines
from ppl_vae.io.rundir import read_config, read_jsonl
from helpers import one_line_error


def test_dequantization_fills_the_cell_of_each_grey_level():
    grey = data.load("digits", binarize="none")
    deq = data.load("digits", binarize="none", dequantize=True)
    L = data.GREY_LEVELS["digits"]
    assert deq.levels == L and grey.levels is None
    x0, x1 = deq.train_epoch(0), deq.train_epoch(1)
    k = torch.round(grey.x_train * (L - 1))
    # x̃ = (k + u) / L with u in [0, 1): every value lies in its grey level's cell
    assert torch.equal(torch.floor(x0 * L), k) and torch.equal(torch.floor(x1 * L), k)
    assert torch.equal(x0, deq.train_epoch(0)) and not torch.equal(x0, x1)  # fresh noise per epoch, seeded
    u = x0 * L - k  # U[0, 1): mean 1/2 within 4 standard errors, variance 1/12
    assert abs(u.mean().item() - 0.5) < 4 * math.sqrt(1 / 12 / u.numel())
    assert u.var().item() == pytest.approx(1 / 12, rel=0.02)
    # the test set is one draw, the same for every seed
    other = data.load("digits", binarize="none", dequantize=True, seed=7)
    assert torch.equal(deq.x_test, other.x_test)
    assert torch.equal(torch.floor(deq.x_test * L), torch.round(grey.x_test * (L - 1)))


def test_dequantizing_binary_pixels_is_refused():
    with pytest.raises(data.UsageError, match="--binarize none"):
        data.load("digits", binarize="dynamic", dequantize=True)


def test_bits_per_dimension_conventions():
    # the uniform density on [0, 1)^D puts probability 1/L on each grey level: log₂ L bits per dimension
    assert baselines.bits_per_dim(0.0, 64, 17) == pytest.approx(math.log2(17))
    # on binary data a log probability converts directly
    assert baselines.bits_per_dim(-64 * math.log(2), 64, None) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    from ppl_vae.cli import main

    out = tmp_path_factory.mktemp("baselines")
    assert main(["baselines", "--out", str(out), "--epochs", "2", "--particles", "10", "--components", "2",
                 "--latent-dim", "3", "--no-progress"]) == 0
    with open(out / "baselines.csv") as f:
        return out, list(csv.DictReader(f))


def test_baselines_write_both_tables(table):
    out, rows = table
    assert [r["table"] for r in rows] == ["continuous"] * len(baselines.CONTINUOUS) + ["binarized"]
    for r in rows:
        exact = r["model"].startswith(("PPCA", "GMM", "Gaussian"))
        assert r["estimate"] == ("exact" if exact else "importance-sampled, K = 10")
        levels = 17 if r["table"] == "continuous" else None
        assert float(r["bits_per_dim"]) == pytest.approx(
            baselines.bits_per_dim(float(r["test_log_likelihood"]), 64, levels))
        assert float(r["fit_seconds"]) >= 0 and (out / "runs").is_dir()
        assert r["command"].startswith("ppl-vae train --out")
    md = (out / "baselines.md").read_text()
    assert "## continuous" in md and "## binarized" in md and "ppl-vae baselines --dataset digits" in md
    # runs whose test bound is exact (closed form, EM, enumeration; not an ELBO) recorded the table's value,
    # and the closed form beats EM on the training draw
    last = {r["run_dir"]: read_jsonl(f"{r['run_dir']}/metrics.jsonl")[-1] for r in rows}
    for r in rows:
        config = read_config(r["run_dir"])
        if config["method"] != "svi" or config["objective"] == "enum":
            assert float(r["test_log_likelihood"]) == pytest.approx(last[r["run_dir"]]["test_bound"], abs=1e-3)
    closed_form, by_em = (last[str(out / "runs" / name)]["train_bound"] for name in ("ppca-closed-form", "ppca-em"))
    assert closed_form >= by_em - 1e-4


def test_a_second_run_into_the_same_folder_is_refused(table, capsys):
    out, _ = table
    code, _, err = run_cli(["baselines", "--out", out, "--epochs", "1"], capsys)
    assert "already holds baseline runs" in one_line_error(code, err)
