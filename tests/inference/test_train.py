import json
import os

import pyro
import pyro.distributions as dist
import pytest
import torch

from ppl_vae.guides.gaussian import DiagonalGaussian
from ppl_vae.models.vae import VAE
from ppl_vae import fit
from ppl_vae.io import checkpoint
from ppl_vae.errors import UsageError
from ppl_vae.io.rundir import read_jsonl
from ppl_vae.inference.trainer import lr_at
from helpers import pair




def test_training_improves_the_test_bound(digits):
    model, guide = pair(digits)
    history = fit(model, guide, digits, epochs=8, progress=False)
    assert [m["epoch"] for m in history] == list(range(1, 9))
    first, last = history[0]["test_bound"], history[-1]["test_bound"]
    assert last > first + 3.0  # nats per example; the first epochs move the bound by far more
    assert history[-1]["step"] == 8 * (digits.x_train.shape[0] // 100)


def test_run_directory_contents(digits, tmp_path):
    out = tmp_path / "run"
    fit(*pair(digits), digits, epochs=2, out=str(out), config={"dataset": "digits"}, progress=False)
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"] == "digits" and config["epochs"] == 2 and config["objective"] == "elbo"
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2]
    assert set(rows[0]) >= {"epoch", "step", "train_bound", "test_bound", "seconds", "lr"}
    state = checkpoint.load(out / "checkpoint.pt")
    assert state["epoch"] == 2 and state["config"]["epochs"] == 2
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]


def test_resume_is_bit_identical_on_cpu(digits, tmp_path):
    straight = fit(*pair(digits), digits, epochs=6, out=str(tmp_path / "a"), progress=False)
    fit(*pair(digits), digits, epochs=3, out=str(tmp_path / "b"), progress=False)
    model, guide = pair(digits, seed=123)  # resuming must not depend on the initial weights
    resumed = fit(model, guide, digits, epochs=6, out=str(tmp_path / "b"), resume=True, progress=False)
    a = checkpoint.load(tmp_path / "a" / "checkpoint.pt")["params"]
    b = checkpoint.load(tmp_path / "b" / "checkpoint.pt")["params"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(resumed) == strip(straight)
    assert strip(read_jsonl(tmp_path / "b" / "metrics.jsonl")) == strip(straight)


def test_resume_drops_metrics_the_checkpoint_never_saw(digits, tmp_path):
    out = tmp_path / "run"
    fit(*pair(digits), digits, epochs=2, out=str(out), progress=False)
    with open(out / "metrics.jsonl", "a") as f:  # as if killed after logging epoch 3, before its checkpoint
        f.write(json.dumps({"epoch": 3, "train_bound": 0.0}) + "\n" + '{"epoch": 4, "trai')
    history = fit(*pair(digits), digits, epochs=3, out=str(out), resume=True, progress=False)
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2, 3] and rows[-1]["train_bound"] != 0.0
    assert history == rows


def test_training_into_an_existing_run_is_refused(digits, tmp_path):
    out = tmp_path / "run"
    fit(*pair(digits), digits, epochs=1, out=str(out), progress=False)
    before = (out / "checkpoint.pt").read_bytes()
    with pytest.raises(UsageError, match="--resume"):
        fit(*pair(digits), digits, epochs=1, out=str(out), progress=False)
    assert (out / "checkpoint.pt").read_bytes() == before


def test_resume_with_another_architecture_is_refused(digits, tmp_path):
    out = tmp_path / "run"
    fit(*pair(digits), digits, epochs=1, out=str(out), progress=False)
    other = VAE(digits.x_dim, latent_dim=4, hidden=(32,)), DiagonalGaussian(digits.x_dim, latent_dim=4, hidden=(32,))
    with pytest.raises((UsageError, RuntimeError)):
        fit(*other, digits, epochs=2, out=str(out), resume=True, progress=False)


def test_plain_callables_train_and_resume(tmp_path):
    """A model and guide written as functions with pyro.param, no nn.Module at all."""
    torch.manual_seed(0)
    x = torch.randn(200, 3) * 0.5 + 2.0

    def model(x):
        mu = pyro.param("mu", torch.zeros(3))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(3), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(mu + z, 0.5).to_event(1), obs=x)

    def guide(x):
        a = pyro.param("a", torch.tensor(0.5))
        s = pyro.param("s", torch.tensor(0.5), constraint=dist.constraints.positive)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(a * x, s).to_event(1))

    straight = fit(model, guide, (x[:150]), epochs=4, batch_size=50, out=str(tmp_path / "a"), progress=False)
    fit(model, guide, x[:150], epochs=2, batch_size=50, out=str(tmp_path / "b"), progress=False)
    resumed = fit(model, guide, x[:150], epochs=4, batch_size=50, out=str(tmp_path / "b"), resume=True,
                  progress=False)
    assert [r["train_bound"] for r in resumed] == [r["train_bound"] for r in straight]
    assert straight[-1]["test_bound"] is None  # no test split given
    assert pyro.param("s").item() > 0


def test_lr_schedule():
    assert lr_at(0, 1e-3, (2, 4), 0.5) == 1e-3
    assert lr_at(2, 1e-3, (2, 4), 0.5) == 5e-4
    assert lr_at(9, 1e-3, (2, 4), 0.5) == 2.5e-4


def test_lr_schedule_reaches_the_optimizer(digits):
    history = fit(*pair(digits), digits, epochs=3, lr=1e-2, lr_milestones=[1, 2], lr_gamma=0.1, progress=False)
    assert [m["lr"] for m in history] == pytest.approx([1e-2, 1e-3, 1e-4])


def test_jit_elbo_estimates_the_same_loss(digits):
    """The JIT form compiles the same estimator: after the first call (which traces), the same random
    draws give the same loss as the plain ELBO, up to float rounding."""
    from ppl_vae.inference import objectives

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
    from pyro.infer import JitTrace_ELBO, Trace_ELBO

    from ppl_vae.config import TrainingConfig
    from ppl_vae.inference import objectives
    from ppl_vae.inference.trainer import Trainer

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
    from pyro.infer import Trace_ELBO

    from ppl_vae.config import TrainingConfig
    from ppl_vae.inference import objectives
    from ppl_vae.inference.trainer import Trainer

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
    from pyro.infer import Trace_ELBO

    from ppl_vae.config import TrainingConfig
    from ppl_vae.inference import objectives
    from ppl_vae.inference.trainer import Trainer

    ragged = TrainingConfig(epochs=1, batch_size=64, drop_last=False)  # the digits' 1500 points: 64 and 28
    trainer = Trainer(*pair(digits), digits, objectives.make("elbo"), ragged, jit=True)
    assert type(trainer.objective.loss) is Trace_ELBO
    assert "the mini-batches have 2 sizes (28, 64)" in capsys.readouterr().err
    vem = TrainingConfig(epochs=1, schedule="vem")
    trainer = Trainer(*pair(digits), digits, objectives.make("elbo"), vem, jit=True)
    assert type(trainer.objective.loss) is Trace_ELBO
    assert "variational EM" in capsys.readouterr().err


def test_runs_in_one_process_keep_each_others_parameters(digits, tmp_path, tiny_run):
    """fit trains in a param-store scope of its own, and load touches the store not at all."""
    from ppl_vae.run import load

    keep = pyro.param("a_users_own_parameter", torch.tensor(3.0))
    fit(*pair(digits), digits, epochs=1, out=str(tmp_path / "run"), config={"dataset": "digits"}, progress=False)
    store = pyro.get_param_store()
    assert "a_users_own_parameter" in store and store["a_users_own_parameter"].item() == 3.0
    assert store["a_users_own_parameter"] is not None and any(k.startswith("decoder") for k in store.keys())
    decoder_names = {k for k in store.keys() if k.startswith("decoder")}
    model, guide = pair(digits, seed=1)
    fit(model, guide, digits, epochs=1, progress=False)  # a second run: same names, its own values win
    assert store["a_users_own_parameter"].item() == 3.0 and keep.item() == 3.0
    assert {k for k in store.keys() if k.startswith("decoder")} == decoder_names
    assert store["decoder$$$decoder.0.weight"] is dict(model.named_parameters())["decoder.0.weight"]
    load(str(tiny_run), "cpu")
    assert store["a_users_own_parameter"].item() == 3.0 and decoder_names <= set(store.keys())


def test_a_second_fit_of_trained_modules_is_refused_unless_asked_for(digits):
    """Otherwise a second objective silently starts where the first ended."""
    model, guide = pair(digits)
    fit(model, guide, digits, epochs=1, progress=False)
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(UsageError, match="already trained by an earlier fit.*warm_start=True"):
        fit(model, guide, digits, "iwae", particles=2, epochs=1, progress=False)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in trained.items())
    history = fit(model, guide, digits, "iwae", particles=2, epochs=1, progress=False, warm_start=True)
    assert len(history) == 1 and not torch.equal(trained["decoder.0.weight"], model.state_dict()["decoder.0.weight"])


def test_a_checkpoint_of_the_per_tensor_pyro_optim_resumes_as_if_never_stopped(digits, tmp_path):
    """Checkpoints written before the one torch optimizer (pyro.optim's state, one Adam per tensor) load:
    each tensor's moments move into the new optimizer, and the run ends as the uninterrupted one."""
    straight = fit(*pair(digits), digits, epochs=4, out=str(tmp_path / "a"), progress=False)
    fit(*pair(digits), digits, epochs=2, out=str(tmp_path / "b"), progress=False)
    path = tmp_path / "b" / "checkpoint.pt"
    state = checkpoint.load(path)
    dense = state["optim"]["dense"]
    names = [name for group in dense["param_groups"] for name in group["names"]]
    state["optim"] = {name: {"state": {0: dense["state"][i]}, "param_groups": [{"lr": 1e-3, "params": [0]}]}
                      for i, name in enumerate(names)}  # pyro.optim.PyroOptim.get_state()'s layout
    checkpoint.save(path, state)
    resumed = fit(*pair(digits), digits, epochs=4, out=str(tmp_path / "b"), resume=True, progress=False)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(resumed) == strip(straight)
