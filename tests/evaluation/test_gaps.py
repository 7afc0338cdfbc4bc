"""The approximation and amortization gaps on a trained digits model, and `ppl-vae gaps`."""

import json

import pytest

from helpers import run_cli
from ppl_vae.evaluation.gaps import gaps
from ppl_vae.run import load as load_run

FAST = ["--epochs", "5", "--hidden", "64", "--latent-dim", "4", "--lr", "3e-3", "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from ppl_vae.cli import main

    out = tmp_path_factory.mktemp("gaps") / "run"
    assert main(["train", "--out", str(out), *FAST]) == 0
    return out


def test_both_gaps_are_non_negative_within_monte_carlo_error(trained):
    run = load_run(str(trained), "cpu")
    r = gaps(run.model, run.guide, run.data.x_test[:100], particles=500)
    for gap in ("approximation_gap", "amortization_gap"):
        assert r[gap] > -4 * r[f"{gap}_se"], r
    # refinement started at the encoder's q and only climbed: after 5 epochs the gap is clearly there
    assert r["amortization_gap"] > 4 * r["amortization_gap_se"], r
    assert r["total_gap"] == pytest.approx(r["approximation_gap"] + r["amortization_gap"], abs=1e-4)
    assert r["log_px"] - r["elbo_q"] == pytest.approx(r["total_gap"], abs=1e-4)
    assert r["refine_steps"] > 0 and r["n"] == 100


def test_cli_writes_json_and_chart_and_refuses_other_guides(trained, tmp_path, capsys):
    code, out, err = run_cli(["gaps", trained, "--points", "40", "--particles", "50", "--max-steps", "200"], capsys)
    assert code == 0, err
    result = json.loads((trained / "gaps.json").read_text())
    assert result["n"] == 40 and result["particles"] == 50 and result["epoch"] == 5
    assert (trained / "gaps.png").read_bytes()[:4] == b"\x89PNG"
    assert "amortization gap" in out
    delta = tmp_path / "delta"
    assert run_cli(["train", "--out", delta, "--guide", "delta", *FAST[:1], "1", *FAST[2:]], capsys)[0] == 0
    code, _, err = run_cli(["gaps", delta], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "--guide gaussian" in lines[0], err
    assert not (delta / "gaps.json").exists()


@pytest.mark.slow
def test_another_encoder_is_refined_per_point_and_agrees_with_the_table_for_the_diagonal_one(trained):
    """Refining a copy of the diagonal encoder's weights per point reaches the L[q*] the local table reaches
    (the same family), within the two estimates' error and a small optimization slack; both sit above L[q]."""
    import torch

    from ppl_vae.evaluation.gaps import network_gaps

    run = load_run(str(trained), "cpu")
    x = run.data.x_test[:12]
    torch.manual_seed(0)
    table = gaps(run.model, run.guide, x, particles=2000)
    torch.manual_seed(0)
    network = network_gaps(run.model, run.guide, x, 2000, lr=3e-3, max_steps=600)
    assert network["refined"] == "a copy per point" and network["refine_steps"] > 0
    assert network["amortization_gap"] > 4 * network["amortization_gap_se"], network
    slack = 4 * (table["elbo_q_star_se"] + network["elbo_q_star_se"]) / 12 ** 0.5 + 0.1
    assert abs(network["elbo_q_star"] - table["elbo_q_star"]) < slack, (network, table)
    # the encoder is left as it was
    torch.testing.assert_close(run.guide.guide.__self__.head.weight, load_run(str(trained), "cpu").guide.head.weight)


@pytest.mark.slow
def test_gaps_of_a_flow_encoder(tmp_path, capsys):
    iaf = tmp_path / "iaf"
    assert run_cli(["train", "--out", iaf, "--guide", "iaf", *FAST], capsys)[0] == 0
    code, out, err = run_cli(["gaps", iaf, "--points", "8", "--particles", "200", "--max-steps", "100"], capsys)
    assert code == 0, err
    r = json.loads((iaf / "gaps.json").read_text())
    assert r["n"] == 8 and r["refined"] == "a copy per point"
    assert r["amortization_gap"] > -4 * r["amortization_gap_se"] and r["approximation_gap"] > -4 * r["approximation_gap_se"]


@pytest.mark.slow
def test_guide_table_script_end_to_end(tmp_path):
    """The whole ladder for one epoch: a row per rung, Δ NLL from each model's first rung, the gaps of
    every rung, the table printed as written, and the figure."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "scripts/guide_table.py", "--out", str(tmp_path), "--epochs", "1",
                           "--particles", "20", "--points", "30", "--gap-points", "3", "--gap-steps", "20",
                           "--hidden", "16", "--latent-dim", "2", "--no-progress"],
                          capture_output=True, text=True, cwd=root)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "guide_table.json").read_text())
    assert list(result) == ["gaussian", "full-cov", "auxiliary", "planar", "iaf", "realnvp", "two-layer-mf",
                            "two-layer"]
    assert all(r["n"] == 30 and r["particles"] == 20 and r["test_nll"] > 0 and r["gaps"]["n"] == 3
               for r in result.values())
    assert [r["model"] for r in result.values()] == ["vae"] * 6 + ["two-layer"] * 2
    assert result["gaussian"]["nll_change"] is None and result["two-layer-mf"]["nll_change"] is None
    assert result["two-layer"]["nll_change"] is not None and result["realnvp"]["nll_change"] is not None
    table = (tmp_path / "guide_table.md").read_text()
    assert "| auxiliary | vae |" in table and "| two-layer | two-layer |" in table and done.stdout.endswith(table)
    assert (tmp_path / "guide_table.png").read_bytes()[:4] == b"\x89PNG"
