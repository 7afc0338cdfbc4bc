"""Each teaching script regenerates its figures from scratch (tiny sizes here; no timing asserted)."""

import importlib.util
from pathlib import Path

import matplotlib.image
import pytest

TEACH = Path(__file__).resolve().parents[2] / "scripts" / "teach"

CASES = {
    "ae_vs_vae": (["--epochs", "1", "--grid", "4"], ["latent_spaces", "generation", "prior_draws"]),
    "pca_linear_ae": (["--steps", "30", "--components", "2"], ["training", "bases"]),
    "gradient_variance": (["--repeats", "50", "--max-samples", "4", "--max-dim", "5", "--samples", "2"],
                          ["variance_vs_samples", "variance_vs_dimension"]),
    "iwae_tightening": (["--max-particles", "4", "--components", "3", "--snr-max-particles", "4", "--snr-samples", "5"],
                        ["bound_vs_k", "gap_vs_k", "snr_vs_k"]),
    "flow_posterior": (["--steps", "5", "--layers", "2", "--samples", "16"], ["densities", "elbo"]),
    "log_px_estimators": (["--epochs", "1", "--points", "10", "--particles", "1,10", "--ais-steps", "2,3",
                           "--ais-chains", "2"], ["estimates_vs_compute"]),
}


pytestmark = pytest.mark.slow  # end-to-end runs of the scripts: `make test-fast` skips them

def test_every_script_is_tested():
    assert {p.stem for p in TEACH.glob("*.py") if not p.stem.startswith("_")} == set(CASES)  # _notebook.py: a helper


@pytest.mark.parametrize("name", CASES)
def test_teaching_script_writes_its_figures(name, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(f"teach_{name}", TEACH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argv, figures = CASES[name]
    module.main([*argv, "--out", str(tmp_path)])
    out = capsys.readouterr().out
    for figure in figures:
        path = tmp_path / f"{figure}.png"
        assert matplotlib.image.imread(path).std() > 0.01
        assert f"wrote {path}:" in out  # and says what the figure shows
