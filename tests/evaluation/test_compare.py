"""``ppl-vae compare`` end to end on digits with tiny settings, and its one-sentence errors."""

import csv
import json

import pytest

from helpers import run_cli
from ppl_vae.evaluation.compare import COLUMNS
from helpers import one_line_error

TINY = ["--epochs", "2", "--hidden", "16", "--latent-dim", "2", "--particles", "3", "--eval-particles", "20",
        "--snr-samples", "5", "--no-progress"]
NAMES = ["elbo", "score-avg", "dreg"]


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    from ppl_vae.cli import main

    out = tmp_path_factory.mktemp("compare")
    assert main(["compare", "--out", str(out), "--objectives", ",".join(NAMES), *TINY]) == 0
    return out


def test_compare_writes_table_plots_and_run_directories(compared, capsys):
    with open(compared / "comparison.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == COLUMNS and [r["objective"] for r in rows] == NAMES
    for r in rows:
        assert float(r["test_iwae"]) > float(r["test_elbo"])  # IWAE-K ≥ ELBO, by far more than noise here
        assert float(r["test_nll"]) > 0 and float(r["guide_snr"]) > 0 and float(r["seconds_per_epoch"]) > 0
        assert int(r["epochs"]) == 2 and int(r["particles"]) == 3
    table = (compared / "comparison.md").read_text()
    assert "| objective | test ELBO | test IWAE-3 | test NLL | NLL MC se | guide SNR | guide grad var | model SNR | s/epoch |" in table
    assert all(f"| {name} |" in table for name in NAMES)
    for png in ("comparison_epochs.png", "comparison_time.png"):
        assert (compared / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in NAMES:
        run = compared / name
        assert {p.name for p in run.iterdir()} >= {"config.json", "metrics.jsonl", "checkpoint.pt", "eval.json"}
        config = json.loads((run / "config.json").read_text())
        assert config["objective"] == name and config["test_bound"] == "iwae" and config["hidden"] == [16]
    code, out, err = run_cli(["evaluate", compared / "dreg", "--particles", "10"], capsys)
    assert code == 0 and "test NLL" in out, err


def test_compare_refuses_bad_input_in_one_sentence(compared, tmp_path, capsys):
    line = one_line_error(*run_cli(["compare", "--out", tmp_path, "--objectives", "elbo,nope", *TINY], capsys)[::2])
    assert "--objectives" in line and "nope" in line
    line = one_line_error(*run_cli(["compare", "--out", compared, "--objectives", "elbo", *TINY], capsys)[::2])
    assert "already holds a run" in line
    line = one_line_error(*run_cli(["compare", "--out", tmp_path / "z", *TINY, "--epochs", "0"], capsys)[::2])
    assert "--epochs" in line
    assert not (tmp_path / "z" / "elbo").exists()


def test_running_average_baselines_refuse_uneven_batches(tmp_path, capsys):
    line = one_line_error(*run_cli(["train", "--out", tmp_path / "r", "--objective", "score-avg", "--no-drop-last",
                                    "--epochs", "1", "--no-progress"], capsys)[::2])
    assert "--no-drop-last" in line and not (tmp_path / "r" / "metrics.jsonl").exists()


@pytest.mark.slow
def test_compare_with_jobs_trains_in_parallel_processes_to_the_same_table(compared, tmp_path):
    """Each run is a function of its configuration, so --jobs 2 gives the sequential table; torch's thread
    count may differ between the two (1 per job), which moves float32 sums by rounding only."""
    from ppl_vae.cli import main

    assert main(["compare", "--out", str(tmp_path), "--objectives", ",".join(NAMES), "--jobs", "2", *TINY]) == 0
    read = lambda out: list(csv.DictReader(open(out / "comparison.csv")))  # noqa: E731
    for seq, par in zip(read(compared), read(tmp_path)):
        assert seq["objective"] == par["objective"]
        for key in ("test_elbo", "test_iwae", "test_nll"):
            assert float(par[key]) == pytest.approx(float(seq[key]), abs=1e-3), (key, seq, par)
