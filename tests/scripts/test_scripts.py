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
    assert set(result["median_ms"]) == {"torch", "pyro", "pyro-jit", "fit"}
    assert all(v > 0 for v in result["median_ms"].values())
    assert "× torch" in out
