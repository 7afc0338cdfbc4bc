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


def test_runs_in_one_process_keep_each_others_parameters(digits, tmp_path, tiny_run):
    """fit trains in a param-store scope of its own, and load replaces only the names its own pair uses."""
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
    loaded = load(str(tiny_run), "cpu")
    assert store["a_users_own_parameter"].item() == 3.0 and decoder_names <= set(store.keys())
    assert store["decoder$$$decoder.0.weight"] is dict(loaded.model.named_parameters())["decoder.0.weight"]


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


def test_a_loaded_runs_gradients_are_its_own_when_another_run_left_its_parameters_in_pyros_store(tmp_path):
    """pyro.module returns the store's tensors of the same names: measured gradients (SNR, gaps) would be
    taken with respect to the other run's parameters, and the loaded modules' would get none."""
    from ppl_vae import run as runs
    from ppl_vae.config import Config
    from ppl_vae.inference import objectives
    from ppl_vae.inference.diagnostics import gradient_stats, summarize
    from ppl_vae.pair import callables

    def snr(run_dir):
        loaded = runs.load(run_dir, "cpu")
        x = loaded.data.x_train[:10]
        pyro.set_rng_seed(0)
        return summarize(gradient_stats(objectives.make("iwae", particles=3), *callables(loaded.model, loaded.guide),
                                        x, torch.arange(10), samples=4))

    config = Config().replace(epochs=1, hidden=[16], latent_dim=2)
    runs.train(config, str(tmp_path / "a"), progress=False)
    pyro.clear_param_store()
    alone = snr(str(tmp_path / "a"))
    runs.train(config.replace(seed=1), str(tmp_path / "b"), progress=False)  # b's weights, same names, in the store
    assert snr(str(tmp_path / "a")) == alone
