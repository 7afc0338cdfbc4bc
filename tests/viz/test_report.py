"""report.md: every number and figure of a run, with links only to files that exist."""

import json
import os
import re
import shutil

import pytest

from helpers import run_cli, train_tiny_run

LINK = re.compile(r"\]\(([^)]+)\)")


def links(md_path):
    text = md_path.read_text()
    return text, LINK.findall(text)


@pytest.fixture
def run(tiny_run, tmp_path):
    shutil.copytree(tiny_run, tmp_path / "run")
    return tmp_path / "run"


def test_report_links_every_figure_and_only_files_that_exist(run, capsys):
    assert run_cli(["evaluate", run, "--particles", "20"], capsys)[0] == 0
    assert run_cli(["outliers", run, "--ood", "noise", "--n", "30", "--particles", "5"], capsys)[0] == 0
    os.remove(run / "figures" / "outliers-noise.png")  # a figure deleted since: must not be linked
    code, out, err = run_cli(["report", run], capsys)
    assert code == 0, err
    text, targets = links(run / "report.md")
    assert targets and all((run / t).is_file() for t in targets)
    assert {f"figures/{name}.png" for name in ("reconstructions", "prior_samples", "latent_means", "manifold",
                                               "training", "kl_units", "interpolations")} <= set(targets)
    assert "outliers-noise.png" not in text and "| noise | 30 + 30 |" in text
    numbers = json.loads((run / "report.json").read_text())
    evaluation = json.loads((run / "eval.json").read_text())
    assert f"{evaluation['test_nll']:.2f} ± {evaluation['test_nll_se']:.2f}" in text
    last = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]
    assert numbers["test_bound"] == last["test_bound"] and f"| test bound, last epoch | {last['test_bound']:.2f} |" in text
    assert f"{numbers['latent']['active_units']} of 2" in text


def test_report_without_evaluation_or_a_drawable_manifold(tmp_path, capsys):
    run = train_tiny_run(tmp_path / "run1d", latent_dim=1, epochs=1)
    code, _, err = run_cli(["report", run], capsys)
    assert code == 0, err
    text, targets = links(run / "report.md")
    assert all((run / t).is_file() for t in targets)
    assert "manifold.png" not in text and "Not drawn: the manifold figure needs at least two latent dimensions" in text
    assert "not estimated; run `ppl-vae evaluate" in text


def test_report_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    code, _, err = run_cli(["report", tmp_path], capsys)
    assert code == 2 and "not a ppl-vae run directory" in err and not (tmp_path / "report.md").exists()
