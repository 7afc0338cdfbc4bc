"""The built-in sequence models: the generated lgssm data, the deep Markov model and its structured
inference network (the RNN guide), the LGSSM as a built-in model, both trained from the command line by
every kind of bound (the ELBO, IWAE, FIVO), and evaluated per sequence and per time step."""

import json

import pyro
import pytest
import torch

from helpers import run_cli
from ppl_vae import Dataset, evaluate, fit
from ppl_vae.data import load
from ppl_vae.evaluation.evaluate import describe
from ppl_vae.guides.sequence import RNNGuide, reversed_within
from ppl_vae.models.dmm import DMM
from ppl_vae.models.lgssm import LGSSM

FAST = ["--dataset", "lgssm", "--latent-dim", "2", "--hidden", "16", "--epochs", "1", "--no-progress"]


def test_the_generated_sequences_are_seeded_padded_and_of_their_lengths():
    a, b = load("lgssm", binarize="none"), load("lgssm", binarize="none", seed=7)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.inputs_test["lengths"], b.inputs_test["lengths"])
    lengths, x = a.inputs_train["lengths"], a.x_train
    assert x.shape == (1000, 20, 3) and a.x_test.shape == (200, 20, 3)
    assert int(lengths.min()) == 10 and int(lengths.max()) == 20
    past = torch.arange(20) >= lengths[:, None]
    assert bool((x[past] == 0).all()) and bool((x[~past] != 0).all())


def test_reversal_within_lengths():
    x, lengths = torch.arange(2 * 4).reshape(2, 4, 1).float(), torch.tensor([4, 2])
    out = reversed_within(x, lengths)[..., 0]
    assert out.tolist() == [[3, 2, 1, 0], [5, 4, 6, 7]]
    assert torch.equal(reversed_within(out[..., None], lengths), x)


def context(guide, x, lengths):
    """h [B, T, H]: the backward RNN's state h_t, what q(z_t | z_{t−1}, x) reads of x."""
    state = {"lengths": lengths}
    guide.init(state, x)
    return state["guide"]["h"]


def test_the_rnn_guide_sees_x_from_t_to_the_end_of_its_length_only():
    torch.manual_seed(0)
    guide = RNNGuide(3, 2, 8)
    x, lengths = torch.randn(2, 6, 3), torch.tensor([6, 4])
    h = context(guide, x, lengths)
    earlier, padding = x.clone(), x.clone()
    earlier[:, 1] += 1.0    # seen by h_0 and h_1, not by h_t for t ≥ 2
    padding[1, 4:] += 1.0   # past the second sequence's length: seen by none of its steps
    moved = context(guide, earlier, lengths)
    assert torch.equal(moved[0, 2:], h[0, 2:]) and torch.equal(moved[1, 2:4], h[1, 2:4])
    assert not torch.allclose(moved[:, :2], h[:, :2])
    assert torch.equal(context(guide, padding, lengths)[1, :4], h[1, :4])


def test_masked_steps_add_nothing_to_the_dmm_or_its_guide():
    torch.manual_seed(1)
    model, guide = DMM(3, 2, 8), RNNGuide(3, 2, 8)
    x, lengths = torch.randn(3, 5, 3), torch.tensor([5, 3, 1])
    guide_tr = pyro.poutine.trace(guide).get_trace(x, lengths)
    model_tr = pyro.poutine.trace(pyro.poutine.replay(model.model, trace=guide_tr)).get_trace(x, lengths)
    for trace in (guide_tr, model_tr):
        trace.compute_log_prob()
        for t in range(5):
            for name in (f"z_{t}", f"x_{t}"):
                if name in trace.nodes:
                    terms = trace.nodes[name]["log_prob"]
                    assert terms.shape == (3,)
                    assert bool((terms[lengths <= t] == 0).all()) and bool((terms[lengths > t] != 0).all())


@pytest.mark.slow
def test_the_dmm_trains_by_elbo_iwae_and_fivo():
    data = load("lgssm", binarize="none")
    small = Dataset.from_tensors({"x": data.x_train[:64], "lengths": data.inputs_train["lengths"][:64]},
                                 {"x": data.x_test[:32], "lengths": data.inputs_test["lengths"][:32]})

    def make_pair(data):
        return DMM(3, 2, 16).model, RNNGuide(3, 2, 16)

    for objective in ("elbo", "iwae", "fivo"):
        history = fit(make_pair, small, objective, particles=1 if objective == "elbo" else 3, epochs=2, batch_size=32,
                      seed=0, progress=False, device="cpu")
        assert all(torch.isfinite(torch.tensor([h["train_bound"], h["test_bound"]])).all() for h in history)


@pytest.mark.slow
def test_train_and_evaluate_the_built_in_sequence_models_from_the_command_line(tmp_path, capsys):
    for model, objective in (("dmm", "fivo"), ("lgssm", "iwae")):
        out = tmp_path / model
        code, printed, err = run_cli(["train", "--model", model, "--objective", objective, "--particles", "2",
                                      "--out", out, *FAST], capsys)
        assert code == 0, err
        assert ("test FIVO bound (particle filter)" if objective == "fivo" else "test bound") in printed
        code, printed, err = run_cli(["evaluate", out, "--particles", "10"], capsys)
        assert code == 0, err
        result = json.loads((out / "eval.json").read_text())
        assert result["mean_length"] == pytest.approx(load("lgssm", binarize="none").inputs_test["lengths"].float().mean())
        if model == "lgssm":  # the Kalman filter's exact value, and the guide's paths against the smoother's
            assert result["estimate"] == "exact"
            assert f"log p(x) {result['test_log_px'] / result['mean_length']:.3f}" in printed
            assert run_cli(["report", out], capsys)[0] == 0
            assert (out / "figures" / "latent_path.png").stat().st_size > 10_000
        else:
            assert f"ELBO {result['test_elbo'] / result['mean_length']:.3f}" in printed
        assert "per time step (÷ the mean length 14.94)" in printed


@pytest.mark.slow
def test_compare_sets_elbo_iwae_and_fivo_on_a_dmm_side_by_side(tmp_path, capsys):
    import csv

    out = tmp_path / "cmp"
    code, printed, err = run_cli(["compare", "--model", "dmm", "--objectives", "elbo,iwae,fivo", "--particles", "2",
                                  "--eval-particles", "10", "--snr-samples", "3", "--out", out, *FAST], capsys)
    assert code == 0, err
    with open(out / "comparison.csv") as f:
        rows = {r["objective"]: r for r in csv.DictReader(f)}
    assert list(rows) == ["elbo", "iwae", "fivo"]
    for r in rows.values():  # one yardstick, whatever each trained: ELBO and log p̂_K of the same K draws, so by
        assert float(r["test_nll"]) <= -float(r["test_elbo"]) + 1e-3  # Jensen NLL ≤ −ELBO, up to float32 rounding
    assert json.loads((out / "fivo" / "config.json").read_text())["objective"] == "fivo"


def test_evaluate_reports_the_kalman_log_likelihood_of_a_built_in_lgssm():
    data = load("lgssm", binarize="none")
    torch.manual_seed(0)
    m = LGSSM(3, 2)
    x, lengths = data.x_test, data.inputs_test["lengths"]
    result = evaluate(m.model, RNNGuide(3, 2, 8), x, inputs={"lengths": lengths})
    exact = m.log_marginal(x, lengths)
    assert result["test_log_px"] == pytest.approx(exact.mean().item(), rel=1e-6)
    assert "per time step" in describe(result)


@pytest.mark.parametrize("argv, sentence", [
    (["--model", "vae", "--objective", "fivo"], "--objective fivo resamples particles between time steps, so it "
                                                "trains sequence models written in step form (--model lgssm or dmm)"),
    (["--model", "dmm", "--binarize", "dynamic"], "the lgssm sequences are real-valued, with nothing to binarize"),
    (["--model", "dmm", "--guide", "gaussian"], "--guide gaussian samples z but --model dmm has latent z_t"),
])
def test_bad_input_for_the_sequence_models_is_one_sentence_before_any_work(argv, sentence, tmp_path, capsys):
    code, _, err = run_cli(["train", *FAST, *argv, "--out", tmp_path / "run"], capsys)
    assert code == 2 and sentence in err and "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_lengths_outside_the_padded_sequences_are_refused_with_one_sentence(tmp_path, capsys):
    data = load("lgssm", binarize="none")
    path = tmp_path / "sequences.pt"
    lengths = data.inputs_train["lengths"].clone()
    lengths[3] = 25  # longer than the 20 steps the tensor holds
    torch.save({"x": data.x_train, "lengths": lengths}, path)
    code, _, err = run_cli(["train", "--model", "dmm", "--data", path, "--latent-dim", "2", "--hidden", "8",
                            "--epochs", "1", "--no-progress", "--out", tmp_path / "run"], capsys)
    assert code == 2 and "Traceback" not in err, err
    assert "the sequences' lengths must be one per sequence and lie in 1 … 20" in err and err.count("\n") == 1
