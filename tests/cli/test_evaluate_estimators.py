"""`ppl-vae evaluate --estimator ...` end to end on a tiny trained digits run: eval.json, lines, refusals."""

import json

import pytest

from helpers import one_line_error, run_cli

NAMES = ["elbo", "is", "laplace", "perturbative", "ais"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from ppl_vae.cli import main

    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", "--out", str(out), "--epochs", "1", "--hidden", "16", "--latent-dim", "2",
                 "--no-progress"]) == 0
    return out


def test_every_estimator_writes_eval_json_and_says_what_its_number_is(tiny, capsys):
    code, out, err = run_cli(["evaluate", tiny, "--estimator", ",".join(NAMES), "--particles", "50", "--ais-steps",
                              "4", "--ais-chains", "2", "--bdmc", "--points", "20", "--no-progress"], capsys)
    assert code == 0, err
    result = json.loads((tiny / "eval.json").read_text())
    entries = result["estimators"]
    assert list(entries) == [*NAMES, "bdmc"] and result["n"] == 20 and result["epoch"] == 1
    for name, entry in entries.items():
        assert {"estimate", "se", "seconds", "quantity", "n"} <= set(entry) and entry["n"] == 20, name
        assert entry["seconds"] > 0 and "per_point" not in entry
    # each estimator reseeds, so elbo, is and perturbative score the same draws of q:
    assert entries["elbo"]["estimate"] <= entries["perturbative"]["estimate"] <= entries["is"]["estimate"] + 1e-6
    assert entries["ais"]["steps"] == 4 and entries["ais"]["chains"] == 2 and 0 < entries["ais"]["acceptance"] <= 1
    assert entries["bdmc"]["lower"] <= entries["bdmc"]["upper"] + 4 * entries["bdmc"]["gap_se"]
    lines = out.splitlines()
    for name, words in [("elbo", "a lower bound"), ("is", "a stochastic lower bound"), ("laplace", "an approximation"),
                        ("perturbative", "a stochastic lower bound"), ("ais", "a stochastic lower bound"),
                        ("bdmc", "stochastic upper bound")]:
        assert any(line.startswith(name + " ") and words in line for line in lines), (name, out)
    code, out, err = run_cli(["report", tiny], capsys)  # the report reads the new eval.json
    assert code == 0, err
    assert "laplace: approximation" in (tiny / "report.md").read_text()


def test_without_estimator_the_output_is_as_before(tiny, capsys):
    code, out, err = run_cli(["evaluate", tiny, "--particles", "20"], capsys)
    assert code == 0, err
    result = json.loads((tiny / "eval.json").read_text())
    assert "estimators" not in result and result["estimate"] == "importance-sampled" and result["particles"] == 20
    assert out.startswith("test ELBO ") and "K = 20; ±: standard error over 297 test points; MC: " in out


@pytest.mark.parametrize("argv, words", [
    (["--estimator", "elbo,lapalce"], "unknown estimator 'lapalce'; choose comma-separated names from elbo, is, "
                                      "laplace, perturbative, ais"),
    (["--estimator", ","], "no estimator named"),
    (["--perturbative-order", "2"], "expected an odd integer ≥ 1"),
    (["--ais-steps", "0"], "expected an integer ≥ 1"),
    (["--ais-chains", "many"], "expected an integer ≥ 1"),
])
def test_bad_options_are_one_line(tiny, capsys, argv, words):
    code, _, err = run_cli(["evaluate", tiny, *argv], capsys)
    assert words in one_line_error(code, err)


def test_a_refused_estimator_stops_before_any_work(tmp_path, capsys):
    from ppl_vae.cli import main

    run = tmp_path / "delta"
    assert main(["train", "--out", str(run), "--guide", "delta", "--epochs", "1", "--hidden", "16", "--latent-dim", "2",
                 "--no-progress"]) == 0
    capsys.readouterr()
    code, out, err = run_cli(["evaluate", run, "--estimator", "laplace,is", "--no-progress"], capsys)
    assert "the guide's site 'z' is a point mass" in one_line_error(code, err)
    assert out == "" and not (run / "eval.json").exists()  # laplace, first in the list, did not run either
    code, out, err = run_cli(["evaluate", run, "--estimator", "laplace", "--points", "10", "--no-progress"], capsys)
    assert code == 0 and "an approximation" in out, err
