"""JIT-compiled training (ppl_vae/inference/jit.py): the same estimator as the eager loss, used by
default where it is, and eager training with one line saying why elsewhere."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import JitTrace_ELBO, Trace_ELBO

from ppl_vae import fit
from ppl_vae.config import TrainingConfig
from ppl_vae.inference import objectives
from ppl_vae.inference.objectives.weighted import CompiledWeighted
from ppl_vae.inference.trainer import Trainer
from helpers import pair


def test_jit_elbo_estimates_the_same_loss(digits):
    """The JIT form compiles the same estimator: after the first call (which traces), the same random
    draws give the same loss as the plain ELBO, up to float rounding."""
    model, guide = pair(digits)
    x = digits.x_test[:50]
    plain, jit = objectives.make("elbo").loss, objectives.make("elbo").jit()
    jit.loss(model.model, guide.guide, x)  # traces and compiles
    for seed in range(3):
        pyro.set_rng_seed(seed)
        expected = plain.loss(model.model, guide.guide, x)
        pyro.set_rng_seed(seed)
        assert jit.loss(model.model, guide.guide, x) == pytest.approx(expected, rel=1e-5)


def test_fit_trains_jit_compiled_by_default_and_ends_where_eager_training_ends(digits):
    """JIT is the default for elbo; it draws the same random numbers as eager training (the compile and
    its check draw from forks of the stream), so both end at the same parameters up to float32 rounding."""
    compiled = Trainer(*pair(digits), digits, objectives.make("elbo"), TrainingConfig(epochs=1), jit=True)
    eager = Trainer(*pair(digits), digits, objectives.make("elbo"), TrainingConfig(epochs=1), jit=False)
    assert type(compiled.objective.loss) is JitTrace_ELBO and type(eager.objective.loss) is Trace_ELBO
    runs = [fit(*pair(digits), digits, epochs=2, progress=False, jit=jit) for jit in (True, False)]
    for a, b in zip(*(h.model.state_dict().values() for h in runs)):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    assert runs[0][-1]["test_bound"] == pytest.approx(runs[1][-1]["test_bound"], abs=1e-3)


class Branching(torch.nn.Module):
    """A user's VAE whose decoder takes a Python branch on the data: a JIT trace would hold one path."""

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


def test_a_program_that_branches_on_the_data_trains_eagerly_with_one_line_saying_why(capsys):
    x = torch.cat([torch.zeros(50, 64), torch.ones(50, 64)])  # the first mini-batch dark, the second bright
    module = Branching()
    trainer = Trainer(module, module, x, objectives.make("elbo"), TrainingConfig(epochs=1, batch_size=50), jit=True)
    assert type(trainer.objective.loss) is Trace_ELBO
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("elbo trains eagerly, not JIT-compiled: traced on one mini-batch, it "
                                               "computed a loss of "), err
    assert err[0].endswith(" on another, so the program takes a path the trace does not hold."), err
    module = Branching()  # where both batches take one path, the trace holds it
    trainer = Trainer(module, module, torch.zeros(100, 64), objectives.make("elbo"),
                      TrainingConfig(epochs=1, batch_size=50), jit=True)
    assert type(trainer.objective.loss) is not Trace_ELBO


def test_runs_jit_cannot_hold_train_eagerly_and_say_why(digits, capsys):
    ragged = TrainingConfig(epochs=1, batch_size=64, drop_last=False)  # the digits' 1500 points: 64 and 28
    trainer = Trainer(*pair(digits), digits, objectives.make("elbo"), ragged, jit=True)
    assert type(trainer.objective.loss) is Trace_ELBO
    assert "the mini-batches have 2 sizes (28, 64)" in capsys.readouterr().err
    vem = TrainingConfig(epochs=1, schedule="vem")
    trainer = Trainer(*pair(digits), digits, objectives.make("elbo"), vem, jit=True)
    assert type(trainer.objective.loss) is Trace_ELBO
    assert "variational EM" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["iwae", "renyi", "rws", "stl", "dreg"])
def test_the_importance_weighted_objectives_train_compiled_to_where_eager_training_ends(digits, name):
    """Their draw, bound and surrogates compile to one graph (CompiledWeighted); with the surrogates'
    own parameter groups (θ, φ, both) the run ends where the eager one does, to float32 rounding."""
    trainer = Trainer(*pair(digits), digits, objectives.make(name, particles=5), TrainingConfig(epochs=1), jit=True)
    assert isinstance(trainer.objective.loss, CompiledWeighted)
    runs = [fit(*pair(digits), digits, objectives.make(name, particles=5), epochs=2, progress=False, jit=jit)
            for jit in (True, False)]
    for a, b in zip(*(h.model.state_dict().values() for h in runs)):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(*(h.guide.state_dict().values() for h in runs)):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
