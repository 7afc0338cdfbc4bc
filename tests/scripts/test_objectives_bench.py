"""scripts/bench_objectives.py runs end to end (tiny sizes; no timing is asserted)."""

import pytest
import json

from helpers import run


pytestmark = pytest.mark.slow  # end-to-end runs of the scripts: `make test-fast` skips them

def test_bench_objectives_reports_objectives_and_iwae_scaling(tmp_path):
    out = run("scripts/bench_objectives.py", "--objectives", "elbo,score-nn,dreg", "--rounds", "2", "--steps", "1",
              "--warmup", "1", "--json", tmp_path / "bench.json")
    result = json.loads((tmp_path / "bench.json").read_text())
    assert set(result["median_ms"]) == {"elbo", "score-nn", "dreg"}
    assert set(result["iwae_scaling_ms"]) == {f"{v}-{k}" for v in ("iwae", "torch-iwae") for k in (1, 5, 50)} | \
        {"dreg-50", "torch-dreg-50"}
    assert all(v > 0 for v in [*result["median_ms"].values(), *result["iwae_scaling_ms"].values()])
    assert "× elbo" in out and "× torch" in out
