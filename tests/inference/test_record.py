"""The recorded training step (ppl_vae/inference/record.py): the same estimator as the eager loss, replayed
without Pyro's Python where the run allows it, and eager training with one line saying why elsewhere."""

import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.infer import TraceEnum_ELBO, Trace_ELBO

from ppl_vae import Dataset, fit
from ppl_vae.config import TrainingConfig
from ppl_vae.inference import objectives, record
from ppl_vae.inference.record import Recorded, loss_and_gradients
from ppl_vae.inference.trainer import Trainer
from ppl_vae.pair import callables
from helpers import pair

LONG = TrainingConfig(epochs=1)  # with record.MIN_STEPS lowered by `every_run_pays`


@pytest.fixture
def every_run_pays(monkeypatch):
    """Record in runs as short as a test's (the rule for short runs has its own test)."""
    monkeypatch.setattr(record, "MIN_STEPS", 0)


def binary(x):
    return torch.bernoulli(x, generator=torch.Generator().manual_seed(0))


def same_step(loss, fast, model, guide, args, kwargs, seed):
    """The eager loss and the replay from the same random numbers: equal loss and gradients, to float32
    reduction order (record.RTOL, as the trainer's check)."""
    assert record.signature(args, kwargs) == fast.signature  # a replay, not the eager loss it falls back to
    pyro.set_rng_seed(seed)
    eager = loss_and_gradients(loss, model, guide, args, kwargs)
    pyro.set_rng_seed(seed)
    replayed = loss_and_gradients(fast, model, guide, args, kwargs)
    assert record.difference(eager, replayed) is None, record.difference(eager, replayed)
    assert any(g is not None and g.abs().sum() > 0 for g in replayed[1].values())  # it trains something


@pytest.mark.parametrize("name", ["elbo", "elbo-analytic", "iwae", "renyi", "rws", "stl", "dreg", "vimco"])
def test_the_replay_computes_the_eager_loss_and_every_gradient_on_another_mini_batch(digits, name):
    model, guide = pair(digits)
    model_fn, guide_fn = callables(model, guide)
    objective = objectives.make(name, particles=1 if name.startswith("elbo") else 5)
    x = binary(digits.x_train[:100])
    fast = record.record(objective.loss, model_fn, guide_fn, (x[:50],), {})
    assert isinstance(fast, Recorded) and all(n.op != "call_module" for n in fast.graph.graph.nodes)
    same_step(objective.loss, fast, model_fn, guide_fn, (x[50:100],), {}, seed=3)


class Conditional(torch.nn.Module):
    """A conditional VAE as Pyro's cvae example writes it: labels y as a keyword input, one-hot inside."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.enc, self.dec = torch.nn.Linear(64 + 10, 4), torch.nn.Linear(2 + 10, 64)

    def model(self, x, y):
        pyro.module("conditional", self)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            logits = self.dec(torch.cat([z, F.one_hot(y, 10).to(x)], -1))
            pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x)

    def guide(self, x, y):
        pyro.module("conditional", self)
        loc, log_scale = self.enc(torch.cat([x, F.one_hot(y, 10).to(x)], -1)).chunk(2, -1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


def test_named_inputs_are_inputs_of_the_record_not_constants(digits):
    """Recorded with one batch's labels, replayed with another's: the eager loss's values and gradients, and
    others than with the first labels (a record holding them as constants would give the first's)."""
    module = Conditional()
    x, y = binary(digits.x_train[:100]), digits.y_train[:100]
    fast = record.record(Trace_ELBO(), module.model, module.guide, (x[:50],), {"y": y[:50]})
    same_step(Trace_ELBO(), fast, module.model, module.guide, (x[50:],), {"y": y[50:]}, seed=4)
    pyro.set_rng_seed(4)
    other = loss_and_gradients(fast, module.model, module.guide, (x[50:],), {"y": (y[50:] + 1) % 10})
    pyro.set_rng_seed(4)
    assert other[0] != loss_and_gradients(fast, module.model, module.guide, (x[50:],), {"y": y[50:]})[0]


def test_elbo_with_enumerated_sites_records_traceenum_elbo(every_run_pays):
    """M2 written as ss_vae_M2.py writes it (y enumerated in the guide): the elbo objective becomes
    TraceEnum_ELBO (checks.summing_out), whose recorded step matches it."""
    from test_guide_enumeration import SSVAE

    x = binary(torch.full((40, 5), 0.4))
    module = SSVAE()
    trainer = Trainer(module, module, Dataset.from_tensors(x, x), objectives.make("elbo"),
                      TrainingConfig(epochs=1, batch_size=20), jit=True)
    trainer.record_step()
    assert isinstance(trainer.objective.loss, Recorded) and type(trainer.objective.loss.eager) is TraceEnum_ELBO
    model_fn, guide_fn = callables(module, module)
    same_step(trainer.objective.loss.eager, trainer.objective.loss, model_fn, guide_fn, (x[20:], torch.arange(20, 40)),
              {}, seed=5)


def test_fit_records_long_runs_by_default_and_ends_where_eager_training_ends(digits, every_run_pays, capsys):
    """Recording and its check draw from forks of the stream, so a recorded run draws the numbers an eager
    one draws, and both end at the same parameters up to float32 rounding. The first line says what
    recording took."""
    trainer = Trainer(*pair(digits), digits, objectives.make("elbo"), LONG, jit=True)
    trainer.record_step()
    assert isinstance(trainer.objective.loss, Recorded)
    line = capsys.readouterr().err.strip().splitlines()[0]
    assert line.startswith("elbo: training step recorded in ") and " ops; its replay matches the eager step" in line
    runs = [fit(*pair(digits), digits, epochs=2, progress=False, jit=jit) for jit in (True, False)]
    for a, b in zip(*(h.model.state_dict().values() for h in runs)):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    assert runs[0][-1]["test_bound"] == pytest.approx(runs[1][-1]["test_bound"], abs=1e-3)


@pytest.mark.parametrize("name", ["iwae", "renyi", "rws", "stl", "dreg", "vimco"])
def test_the_importance_weighted_objectives_train_recorded_to_where_eager_training_ends(digits, name,
                                                                                       every_run_pays):
    """Their surrogates' own parameter groups (θ, φ, both) are kept in the record: the run ends where the
    eager one does, to float32 rounding."""
    trainer = Trainer(*pair(digits), digits, objectives.make(name, particles=5), LONG, jit=True)
    trainer.record_step()
    assert isinstance(trainer.objective.loss, Recorded)
    runs = [fit(*pair(digits), digits, objectives.make(name, particles=5), epochs=2, progress=False, jit=jit)
            for jit in (True, False)]
    for a, b in zip(*(h.model.state_dict().values() for h in runs)):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(*(h.guide.state_dict().values() for h in runs)):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def test_a_training_step_raises_no_deprecation_warning_from_torch(digits, every_run_pays):
    """Neither the recorded step nor the eager one uses an API torch has deprecated (TorchScript's tracer was one)."""
    for name, jit in (("elbo", True), ("iwae", True), ("elbo", False)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit(*pair(digits), digits, objectives.make(name, particles=2), epochs=1, progress=False, jit=jit)
        deprecated = [w for w in caught if issubclass(w.category, (DeprecationWarning, FutureWarning))
                      and "torch" in w.filename]
        assert not deprecated, [f"{w.filename}: {w.message}" for w in deprecated]


class Branching(torch.nn.Module):
    """A user's VAE whose decoder takes a Python branch on the data: a record holds one path."""

    def __init__(self):
        super().__init__()
        self.enc, self.dec, self.dec_bright = (torch.nn.Linear(64, 4), torch.nn.Linear(2, 64), torch.nn.Linear(2, 64))

    def model(self, x, idx=None):
        pyro.module("branching", self)
        decoder = self.dec_bright if x.mean() > 0.5 else self.dec
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=decoder(z)).to_event(1), obs=x)

    def guide(self, x, idx=None):
        pyro.module("branching", self)
        loc, log_scale = self.enc(x).chunk(2, -1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


def test_a_program_that_branches_on_the_data_trains_eagerly_with_one_line_saying_why(capsys, every_run_pays):
    x = torch.cat([torch.zeros(50, 64), torch.ones(50, 64)])  # the first mini-batch dark, the second bright
    module = Branching()
    trainer = Trainer(module, module, x, objectives.make("elbo"), TrainingConfig(epochs=1, batch_size=50), jit=True)
    trainer.record_step()
    assert type(trainer.objective.loss) is Trace_ELBO
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("elbo trains eagerly, not recorded: recorded on one mini-batch, it "
                                               "computed a loss of "), err
    assert err[0].endswith(" on another, so the program takes a path the record does not hold."), err
    module = Branching()  # where both batches take one path, the record holds it
    trainer = Trainer(module, module, torch.zeros(100, 64), objectives.make("elbo"),
                      TrainingConfig(epochs=1, batch_size=50), jit=True)
    trainer.record_step()
    assert isinstance(trainer.objective.loss, Recorded)


def test_runs_a_record_cannot_hold_train_eagerly_and_say_why(digits, capsys, every_run_pays):
    ragged = TrainingConfig(epochs=1, batch_size=64, drop_last=False)  # the digits' 1500 points: 64 and 28
    trainer = Trainer(*pair(digits), digits, objectives.make("elbo"), ragged, jit=True)
    trainer.record_step()
    assert type(trainer.objective.loss) is Trace_ELBO
    assert "the mini-batches have 2 sizes (28, 64)" in capsys.readouterr().err
    vem = TrainingConfig(epochs=1, schedule="vem")
    trainer = Trainer(*pair(digits), digits, objectives.make("elbo"), vem, jit=True)
    trainer.record_step()
    assert type(trainer.objective.loss) is Trace_ELBO
    assert "variational EM" in capsys.readouterr().err


def test_a_run_too_short_to_pay_for_recording_trains_eagerly_and_says_so(digits, capsys):
    """The digits at batch 100: 15 steps an epoch, so 2 epochs are far below record.MIN_STEPS."""
    trainer = Trainer(*pair(digits), digits, objectives.make("elbo"), TrainingConfig(epochs=2), jit=True)
    trainer.record_step()
    assert type(trainer.objective.loss) is Trace_ELBO
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"elbo trains eagerly, not recorded: a run of 30 steps is too short to pay for recording the step "
                   f"(recording pays from about {record.MIN_STEPS} steps)."], err


def test_a_number_given_at_every_step_keeps_the_step_eager_and_a_tensor_records(digits, capsys, every_run_pays):
    """A Pair's per-step input (a KL annealing factor, as dmm.py passes it) that is a number would be recorded
    as a constant: the run trains eagerly and says how to record it; given as a tensor, it is an input."""
    from ppl_vae import Pair

    class Annealed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.enc, self.dec = torch.nn.Linear(64, 4), torch.nn.Linear(2, 64)

        def model(self, x, annealing=1.0):
            pyro.module("annealed", self)
            with pyro.plate("data", x.shape[0]):
                with poutine.scale(scale=annealing):
                    z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
                pyro.sample("x", dist.Bernoulli(logits=self.dec(z)).to_event(1), obs=x)

        def guide(self, x, annealing=1.0):
            pyro.module("annealed", self)
            loc, log_scale = self.enc(x).chunk(2, -1)
            with pyro.plate("data", x.shape[0]):
                with poutine.scale(scale=annealing):
                    pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))

    module = Annealed()
    numbers = Pair(module.model, module.guide, step_inputs={"annealing": lambda step: min(1.0, 0.1 + step / 100)})
    trainer = Trainer(*numbers.programs(), digits, objectives.make("elbo"), LONG, jit=True)
    trainer.record_step()
    assert type(trainer.objective.loss) is Trace_ELBO
    assert ("the pair's per-step input annealing is not a tensor, which a recorded graph would hold fixed; give it "
            "as torch.tensor(...) to record the step") in capsys.readouterr().err
    tensors = Pair(module.model, module.guide,
                   step_inputs={"annealing": lambda step: torch.tensor(min(1.0, 0.1 + step / 100))})
    trainer = Trainer(*tensors.programs(), digits, objectives.make("elbo"), LONG, jit=True)
    trainer.record_step()
    assert isinstance(trainer.objective.loss, Recorded)
    model_fn, guide_fn = callables(module.model, module.guide)
    x = binary(digits.x_train[:100])
    same_step(Trace_ELBO(), trainer.objective.loss, model_fn, guide_fn, (x, torch.arange(100)),
              {"annealing": torch.tensor(0.3)}, 6)
