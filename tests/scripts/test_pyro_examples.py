"""Acceptance: programs written the way Pyro's examples write them (``scripts/examples/``), on small data.

Each pair trains one epoch with every objective ``check`` accepts for it (``elbo`` among them), and
its test ELBO from ``ppl_vae.evaluate`` equals Pyro's own estimator's (``Trace_ELBO``,
``TraceEnum_ELBO``, ``TraceMeanField_ELBO``) on the same parameters and points, within four Monte
Carlo standard errors of the difference. Pyro's estimate is the mean of single-particle losses, so
its standard error is their spread over √M. Where a program has global latents (lda.py,
sparse_gamma_def.py), ``evaluate`` reports the per-point ELBO given q(globals): Pyro's full ELBO less
its global terms E_q[log p(β) − log q(β)], which Pyro estimates on the programs with the local sites
hidden.
"""

from __future__ import annotations

import math
import runpy
from pathlib import Path

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceEnum_ELBO, TraceGraph_ELBO, TraceMeanField_ELBO

from ppl_vae import Dataset, check, evaluate, fit
from ppl_vae import data as datasets
from ppl_vae.pair import Pair

EXAMPLES = Path(__file__).resolve().parents[2] / "scripts" / "examples"
EVAL_PARTICLES = 400  # ppl_vae.evaluate's importance samples per point
PYRO_PARTICLES = 300  # single-particle losses averaged for Pyro's estimate
SIGMAS = 4


@pytest.fixture(scope="module")
def digits():
    return datasets.load("digits", binarize="static")


def example(name: str) -> dict:
    return runpy.run_path(str(EXAMPLES / f"{name}.py"))


def trains_with_what_check_accepts(make_pair, data, **settings) -> list[str]:
    """Every objective check accepts for the pair, each trained one epoch to finite bounds."""
    pyro.set_rng_seed(0)
    made = make_pair(data)
    table = check(made, data, batch_size=settings.get("batch_size")) if isinstance(made, Pair) else \
        check(*made, data, batch_size=settings.get("batch_size"))
    accepted = [name for name, verdict in table.items() if verdict == "ok"]
    assert "elbo" in accepted, table
    for name in accepted:
        history = fit(make_pair, data, name, particles=2, epochs=1, progress=False, device="cpu", **settings)
        assert all(math.isfinite(history[-1][key]) for key in ("train_bound", "test_bound")), (name, history)
    return accepted


def pyro_elbo(loss, model, guide, *args, **kwargs) -> tuple[float, float]:
    """Pyro's ELBO (the sum over the points) by ``loss`` and its Monte Carlo standard error."""
    with torch.no_grad():
        values = torch.tensor([-loss.loss(model, guide, *args, **kwargs) for _ in range(PYRO_PARTICLES)],
                              dtype=torch.float64)
    return values.mean().item(), values.std().item() / math.sqrt(PYRO_PARTICLES)


def assert_same_elbo(ours: dict, pyro_total: tuple[float, float], n: int, key: str = "test_elbo"):
    (total, se), value, our_se = pyro_total, ours[key], ours[f"{key}_mc_se"]
    tolerance = SIGMAS * math.hypot(se / n, our_se)
    assert abs(value - total / n) < tolerance, (value, total / n, tolerance)


def hidden(program, sites):
    return poutine.block(program, hide=list(sites))


def test_vae_py(digits):
    """examples/vae/vae.py: decoder registered in the model, encoder in the guide, sites 'latent' and 'obs'."""
    VAE = example("svi_loop")["VAE"]
    data = Dataset.from_tensors(digits.x_train[:60], digits.x_test[:30])
    make = lambda d: (lambda vae: (vae.model, vae.guide))(VAE(d.x_dim, 4, 32))  # noqa: E731
    accepted = trains_with_what_check_accepts(make, data, batch_size=20)
    assert {"iwae", "dreg", "stl", "rws", "renyi"} <= set(accepted)
    pyro.set_rng_seed(1)
    history = fit(make, data, "elbo", epochs=2, batch_size=20, progress=False, device="cpu")
    ours = evaluate(history.model, history.guide, data.x_test, particles=EVAL_PARTICLES)
    assert_same_elbo(ours, pyro_elbo(Trace_ELBO(), history.model, history.guide, data.x_test), 30)


def test_ss_vae_m2_py(digits):
    """ss_vae_M2.py: ys=None for unlabelled batches, guide enumeration, the auxiliary loss beside the ELBO."""
    ss = example("ss_vae")
    small = Dataset.from_tensors(digits.x_train[:80], digits.x_test[:30], y_train=digits.y_train[:80],
                                 y_test=digits.y_test[:30], image_shape=digits.image_shape)
    data = ss["semi_supervised"](small, 0.25)
    accepted = trains_with_what_check_accepts(ss["make_pair"], data, batch_size=20)
    assert set(accepted) == {"elbo", "enum"}  # the others would sample the enumerated label: refused
    pyro.set_rng_seed(1)
    history = fit(ss["make_pair"], data, "elbo", epochs=2, batch_size=20, progress=False, device="cpu")
    assert history[-1]["train_bound_labelled"] == "20 of 80" and history[-1]["train_extra_loss"] > 0
    ss_vae, guide = history.model.program, history.guide.program
    ys = data.inputs_test["ys"]
    ours = evaluate(history.model, history.guide, data.x_test, particles=EVAL_PARTICLES, inputs={"ys": ys})
    assert ours["quantity"] == "log p(x, y)"  # the site y, observed as the input ys
    pyro_total = pyro_elbo(TraceEnum_ELBO(max_plate_nesting=1), ss_vae.model, guide, data.x_test, ys)
    assert_same_elbo(ours, pyro_total, 30)


@pytest.mark.slow
def test_cvae_py(digits):
    """examples/cvae: images [B, 8, 8], a plate with no size, the likelihood on ys[xs == -1]."""
    cvae = example("cvae_quadrants")
    q_train, q_test = cvae["quadrants"](digits.x_train[:60]), cvae["quadrants"](digits.x_test[:30])
    data = Dataset.from_tensors(q_train, q_test)
    assert data.x_shape == (8, 8)
    trains_with_what_check_accepts(cvae["make_pair"], data, batch_size=20)
    pyro.set_rng_seed(1)
    history = fit(cvae["make_pair"], data, "elbo", epochs=2, batch_size=20, progress=False, device="cpu")
    ys = data.inputs_test["ys"]
    ours = evaluate(history.model, history.guide, data.x_test, particles=EVAL_PARTICLES, inputs={"ys": ys})
    assert ours["quantity"] == "log p(y | x)" and ours["one_at_a_time"]
    net = history.model  # the module, model and guide in one
    assert_same_elbo(ours, pyro_elbo(Trace_ELBO(), net.model, net.guide, data.x_test, ys), 30)


@pytest.mark.slow
def test_dmm_py():
    """dmm.py: its own signature fed by a per-batch function, pyro.markov, masks, annealing per step, ClippedAdam."""
    dmm = example("dmm")
    train, test = dmm["sequences"](40, t_max=6, d=4), dmm["sequences"](20, t_max=6, d=4, seed=1)
    data = Dataset.from_tensors(train, test)
    settings = dict(batch_size=20, optimizer="ClippedAdam", optim_args={"clip_norm": 10.0, "lrd": 0.999})
    trains_with_what_check_accepts(dmm["make_pair"], data, **settings)
    pyro.set_rng_seed(1)
    history = fit(dmm["make_pair"], data, "elbo", epochs=2, progress=False, device="cpu", **settings)
    assert history[-1]["train_bound_given"]["annealing_factor"] == pytest.approx(dmm["annealing"](3))
    lengths = data.inputs_test["lengths"]
    ours = evaluate(history.model, history.guide, data.x_test, particles=EVAL_PARTICLES, inputs={"lengths": lengths})
    assert ours["quantity"] == "log p(x | lengths)"  # obs_x_1 … obs_x_6 are the time steps of x: x, given its lengths
    program = history.model.program.__self__
    arguments = dmm["batch_arguments"](data.x_test, lengths)  # annealing_factor left at its default, 1
    assert_same_elbo(ours, pyro_elbo(Trace_ELBO(), program.model, program.guide, **arguments), 20)


@pytest.mark.slow
def test_lda_py():
    """lda.py: plate 'documents' with 'words' nested, integer words, word topics summed out, global topics."""
    lda = example("lda")
    data = Dataset.from_tensors(lda["documents"](30), lda["documents"](20, seed=1))
    assert data.x_train.dtype == torch.int64
    trains_with_what_check_accepts(lda["make_pair"], data, batch_size=30)
    pyro.set_rng_seed(1)
    history = fit(lda["make_pair"], data, "elbo", epochs=3, batch_size=30, lr=0.01, progress=False, device="cpu")
    ours = evaluate(history.model, history.guide, data.x_test, particles=EVAL_PARTICLES)
    assert ours["estimate"] == "given global latents"
    guide, args = history.guide.program, lda["settings"](20)
    full = pyro_elbo(TraceEnum_ELBO(max_plate_nesting=2), lda["model"], guide, data.x_test.T, args)
    local = ("doc_topics", "word_topics", "doc_words")
    globals_ = pyro_elbo(Trace_ELBO(max_plate_nesting=2), hidden(lda["model"], local), hidden(guide, local),
                         data.x_test.T, args)
    assert_same_elbo(ours, (full[0] - globals_[0], math.hypot(full[1], globals_[1])), 20, "test_objective")


@pytest.mark.slow
def test_sparse_gamma_def_py(digits):
    """sparse_gamma_def.py: the full data set every step, global weights, per-point guide parameters,
    AdagradRMSProp and a hook that clamps the parameters after every step."""
    sgd = example("sparse_gamma_def")
    x = torch.round(digits.x_train[:30] * 16)
    data = Dataset.from_tensors(x, x)
    settings = dict(batch_size=30, optimizer="AdagradRMSProp", optim_args={"eta": 4.5, "t": 0.1})
    accepted = trains_with_what_check_accepts(sgd["make_pair"], data, **settings)
    assert "elbo-analytic" in accepted and "iwae" not in accepted  # global latents: weighted bounds refuse them
    pyro.set_rng_seed(1)
    history = fit(sgd["make_pair"], data, "elbo-analytic", epochs=5, progress=False, device="cpu", **settings)
    for name, value in pyro.get_param_store().items():
        if name.startswith(("alpha_", "mean_")):  # clip_params ran after the last step
            assert value.min() >= (-2.5 if name.startswith("alpha") else -4.5), name
    ours = evaluate(history.model, history.guide, x, particles=EVAL_PARTICLES)
    model, guide = history.model.program, history.guide.program
    full = pyro_elbo(TraceMeanField_ELBO(), model, guide, x)
    local = ("z_top", "z_mid", "z_bottom", "obs")
    globals_ = pyro_elbo(Trace_ELBO(), hidden(model, local), hidden(guide, local), x)
    assert_same_elbo(ours, (full[0] - globals_[0], math.hypot(full[1], globals_[1])), 30, "test_objective")


@pytest.mark.slow
def test_air(tmp_path):
    """examples/air: model(data, batch_size, **kwargs), a guide that subsamples itself, discrete z_pres with a
    baseline the guide declares, masks, spatial transformers, the prior annealed per step."""
    air = example("air")
    (x_train, _), (x_test, _) = air["canvases"](40), air["canvases"](20, seed=1)
    data = Dataset.from_tensors(x_train, x_test)
    accepted = trains_with_what_check_accepts(air["make_pair"], data, batch_size=40)
    assert "iwae" not in accepted  # z_pres cannot be reparameterized
    pyro.set_rng_seed(1)
    history = fit(air["make_pair"], data, "elbo", epochs=3, batch_size=40, progress=False, device="cpu",
                  out=str(tmp_path / "air"))
    assert history[-1]["train_bound_given"]["z_pres_prior_p"].startswith("functools.partial")  # in metrics.jsonl
    ours = evaluate(history.model, history.guide, data.x_test, particles=EVAL_PARTICLES)
    assert ours["one_at_a_time"] and ours["quantity"] == "log p(x)"
    program = history.model.program.__self__
    assert_same_elbo(ours, pyro_elbo(TraceGraph_ELBO(), program.model, program.guide, data.x_test, None), 20)


def test_a_pairs_hook_runs_after_every_step_and_its_schedule_feeds_every_step():
    calls, seen = [], []

    def model(x, factor=1.0):
        seen.append(factor)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", pyro.distributions.Normal(x.new_zeros(1), 1.0).to_event(1))
            pyro.sample("x", pyro.distributions.Normal(z, 1.0).to_event(1), obs=x)

    def guide(x, factor=1.0):
        loc = pyro.param("loc", torch.zeros(1))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", pyro.distributions.Normal(loc, 1.0).to_event(1))

    x = torch.randn(12, 1)
    pair = Pair(model, guide, step_inputs={"factor": lambda step: 10.0 + step}, after_step=lambda: calls.append(1))
    seen.clear()
    fit(pair, Dataset.from_tensors(x, x), "elbo", epochs=2, batch_size=4, jit=False, progress=False, device="cpu")
    assert len(calls) == 6  # 3 steps per epoch
    assert {10.0, 11.0, 15.0} <= set(seen) and 16.0 not in seen and 1.0 in seen  # training steps, and the test bound


@pytest.mark.parametrize("name, argv, keys", [
    pytest.param("ss_vae", ["--epochs", "1"], {"train_bound", "test_bound", "train_extra_loss", "test_accuracy"},
                 marks=pytest.mark.slow),
    pytest.param("cvae_quadrants", ["--epochs", "1"], {"train_bound", "test_bound"},
                 marks=pytest.mark.slow),
    ("dmm", ["--epochs", "1"], {"train_bound", "test_bound", "train_bound_given"}),
    ("lda", ["--epochs", "2"], {"train_bound", "test_bound"}),
    ("sparse_gamma_def", ["--epochs", "2", "--n", "30"], {"train_bound", "test_bound"}),
    ("air", ["--epochs", "2"], {"train_bound", "test_bound"}),
    ("draw", ["--epochs", "1", "--steps", "2"], {"train_bound", "test_bound", "test_nll"}),
    pytest.param("dmm_fivo", ["--epochs", "1", "--particles", "2"],
                 {"train_bound", "test_bound", "iwae_test_nll", "fivo_test_nll"}, marks=pytest.mark.slow),
])
def test_each_example_runs_as_a_script(name, argv, keys, capsys):
    result = example(name)["main"](argv)
    assert set(result) == keys and all(math.isfinite(v) for v in (result["train_bound"], result["test_bound"]))
    printed, bound = capsys.readouterr().out, result["test_bound"]
    assert repr(bound) in printed or f"{bound:.2f}" in printed  # the number printed is the one returned


def test_the_dmm_example_saves_its_sequences_for_the_command_line(tmp_path):
    path = tmp_path / "sequences.pt"
    example("dmm")["main"](["--save", str(path)])
    saved = torch.load(path, weights_only=True)
    assert set(saved) == {"train/x", "train/lengths", "test/x", "test/lengths"} and saved["train/x"].shape[1:] == (12, 6)


def annealed_model(x, factor=1.0):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", pyro.distributions.Normal(x.new_zeros(1), 1.0).to_event(1))
        with poutine.scale(scale=factor):
            pyro.sample("x", pyro.distributions.Normal(z, 1.0).to_event(1), obs=x)


def shifted_guide(x, factor=1.0):
    loc = pyro.param("loc", torch.zeros(1))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", pyro.distributions.Normal(x + loc, 1.0).to_event(1))


def make_annealed(data):
    penalty = lambda model, guide, x: pyro.param("loc").square().sum() * x.shape[0]  # noqa: E731
    return Pair(annealed_model, shifted_guide, step_inputs={"factor": lambda step: min(1.0, 0.5 + 0.1 * step)},
                losses=[penalty])


def test_a_pair_with_step_inputs_and_an_extra_loss_resumes_exactly(tmp_path):
    x = torch.randn(12, 1, generator=torch.Generator().manual_seed(0))
    data, settings = Dataset.from_tensors(x, x), dict(batch_size=4, lr=0.1, progress=False, device="cpu")
    whole = fit(make_annealed, data, epochs=2, **settings)
    fit(make_annealed, data, epochs=1, out=str(tmp_path / "run"), **settings)
    resumed = fit(make_annealed, data, epochs=2, out=str(tmp_path / "run"), resume=True, **settings)
    assert resumed[-1] == {**whole[-1], "seconds": resumed[-1]["seconds"]}
    assert whole[-1]["train_bound_given"] == {"factor": 1.0} and whole[0]["train_bound_given"] == {"factor": 0.7}
    assert whole[-1]["train_extra_loss"] > 0
