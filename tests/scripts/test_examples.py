"""The worked examples of scripts/examples/, end to end: the semi-supervised M2 model classifies the digits well
above chance from 10 % of the labels, and its labels cannot leak from the unlabelled points."""

import pytest

from helpers import ROOT
from ppl_vae import data as datasets
from ppl_vae import spec

M2 = ROOT / "scripts" / "examples" / "m2.py"


def test_m2_hides_the_labels_of_the_unlabelled_points():
    semi_supervised = spec.factory(f"{M2}:semi_supervised")
    data, labelled = semi_supervised(datasets.load("digits", binarize="dynamic"), 0.1, seed=0)
    assert labelled.sum() == 150 and (data.inputs_train["y"][~labelled] == 0).all()
    assert not data.inputs_test["labelled"].any()  # the test bound sums y out: a bound on log p(x)


@pytest.mark.slow
def test_m2_classifies_the_digits_well_above_chance_from_ten_percent_of_the_labels(capsys):
    result = spec.factory(f"{M2}:main")(["--epochs", "30", "--particles", "20"])
    # chance is 0.1 and the standard error of an accuracy on 297 digits at most 0.03; 30 epochs gave 0.62 here
    assert result["m2_accuracy"] > 0.3, result
    assert result["labelled"] == 150 and 0.5 < result["logreg_accuracy"] <= 1
    assert "test accuracy M2" in capsys.readouterr().out


def test_the_plain_svi_loop_example_trains_with_a_drop_in_loss_and_evaluates(monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["svi_loop.py", "--loss", "RWS", "--particles", "3", "--epochs", "2"])
    spec.factory(f"{ROOT / 'scripts' / 'examples' / 'svi_loop.py'}:main")()
    first, second = capsys.readouterr().out.splitlines()
    assert first.startswith("RWS(num_particles=3) in a plain SVI loop, 2 epochs")
    assert second.startswith("test ELBO ") and "test NLL = −log p(x) " in second


def test_the_lgssm_example_fits_toward_the_truth_and_orders_its_bounds_below_kalman(capsys):
    result = spec.factory(f"{ROOT / 'scripts' / 'examples' / 'lgssm.py'}:main")(["--epochs", "3", "--particles", "4"])
    assert result["elbo"] < result["iwae"] < result["kalman_true"] and result["fivo"] < result["kalman_true"]
    assert "Kalman log p(x)" in capsys.readouterr().out
