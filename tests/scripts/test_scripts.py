"""The example and the benchmark run end to end (tiny sizes; no timing is asserted)."""

import pytest
import json
from pathlib import Path
from helpers import run

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.slow  # end-to-end runs of the scripts: `make test-fast` skips them



def test_custom_model_example_trains_and_evaluates():
    out = run("scripts/examples/custom_model.py", "--epochs", "2", "--particles", "20")
    assert "after 2 epochs: test ELBO" in out and "test NLL" in out


def test_bench_train_reports_every_variant(tmp_path):
    out = run("scripts/bench_train.py", "--rounds", "2", "--steps", "2", "--warmup", "1",
              "--json", tmp_path / "bench.json")
    result = json.loads((tmp_path / "bench.json").read_text())
    assert set(result["median_ms"]) == {"torch", "pyro", "pyro-jit", "fit", "fit-eager"}
    assert all(v > 0 for v in result["median_ms"].values())
    assert "× torch" in out


def test_bench_eval_times_evaluate_against_a_hand_written_sampler_that_agrees(tmp_path):
    run("scripts/bench_eval.py", "--points", "20", "--particles", "200", "--rounds", "1", "--json", tmp_path / "e.json")
    result = json.loads((tmp_path / "e.json").read_text())
    assert set(result["median_s"]) == {"torch", "evaluate"}
    # two independent importance samplers of one log p(x): untrained networks give NLL ≈ 44 with a spread of
    # a few tenths over 20 points at K = 200
    assert abs(result["nll"]["torch"] - result["nll"]["evaluate"]) < 1.0, result["nll"]


def test_bench_concurrent_times_runs_started_together(tmp_path):
    out = run("scripts/bench_concurrent.py", "--runs", "1,2", "--rounds", "1", "--epochs", "1",
              "--json", tmp_path / "c.json")
    result = json.loads((tmp_path / "c.json").read_text())
    assert set(result["median_s"]) == {"1", "2"} and all(v > 0 for v in result["median_s"].values())
    assert "ideal" in out
