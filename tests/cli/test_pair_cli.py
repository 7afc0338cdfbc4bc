"""The whole CLI on a user's own pair (`--pair FILE.py:FACTORY`): train, resume, evaluate, check, compare,
report — and one sentence when the file is gone, has changed, or the pair cannot do what is asked."""

import json
import textwrap

import pyro
import pytest
import torch

from helpers import ROOT, one_line_error, run_cli
from ppl_vae.io import checkpoint

USER_PAIR = textwrap.dedent('''
    """A user's small VAE: a decoder with a learned global pixel temperature kept as a pyro.param."""
    import pyro
    import pyro.distributions as dist
    import torch
    from pyro.distributions import constraints
    from torch import nn


    class Decoder(nn.Module):
        def __init__(self, x_dim):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, x_dim))

        def model(self, x):
            pyro.module("my_decoder", self)
            temperature = pyro.param("temperature", torch.tensor(2.0), constraint=constraints.positive)
            with pyro.plate("data", x.shape[0]):
                z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
                pyro.sample("x", dist.Bernoulli(logits=self.net(z) / temperature).to_event(1), obs=x)


    class Encoder(nn.Module):
        def __init__(self, x_dim):
            super().__init__()
            self.net = nn.Linear(x_dim, 4)

        def guide(self, x):
            pyro.module("my_encoder", self)
            with pyro.plate("data", x.shape[0]):
                loc, log_scale = self.net(x).chunk(2, -1)
                pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


    def make_pair(data):
        return Decoder(data.x_dim), Encoder(data.x_dim)


    def shared_pair(data):
        """Tied weights: the decoder computes with the encoder's own weight matrix."""
        encoder = Encoder(data.x_dim)

        def model(x):
            pyro.module("my_encoder", encoder)
            with pyro.plate("data", x.shape[0]):
                z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
                pyro.sample("x", dist.Bernoulli(logits=z @ encoder.net.weight[:2]).to_event(1), obs=x)

        return model, encoder.guide
''')


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "my_models.py"
    path.write_text(USER_PAIR)
    return path


def train(capsys, spec, out, *extra):
    code, stdout, err = run_cli(["train", "--pair", spec, "--out", out, "--batch-size", "300", "--lr", "0.01",
                                 "--no-progress", *extra], capsys)
    assert code == 0, err
    return stdout


def test_a_pair_run_trains_resumes_and_evaluates_like_a_built_in_one(user_file, tmp_path, capsys):
    spec = f"{user_file}:make_pair"
    train(capsys, spec, tmp_path / "straight", "--epochs", "3")
    train(capsys, spec, tmp_path / "stopped", "--epochs", "2")
    code, _, err = run_cli(["train", "--resume", tmp_path / "stopped", "--epochs", "3", "--no-progress"], capsys)
    assert code == 0, err
    metrics = [[json.loads(line) for line in open(tmp_path / name / "metrics.jsonl")] for name in ("straight", "stopped")]
    assert [m["test_bound"] for m in metrics[0]] == [m["test_bound"] for m in metrics[1]]  # bit-identical
    recorded = json.load(open(tmp_path / "straight" / "config.json"))
    assert recorded["pair"] == spec and len(recorded["pair_sha256"]) == 64 and recorded["model"] is None

    from ppl_vae.run import load

    state = checkpoint.load(str(tmp_path / "straight" / checkpoint.NAME))
    pyro.clear_param_store()
    run = load(str(tmp_path / "straight"), "cpu")  # the pyro.param no module holds comes back too
    temperature = pyro.param("temperature").detach()
    assert temperature.item() != pytest.approx(2.0, abs=1e-3)  # it trained
    torch.testing.assert_close(temperature.log(), state["params"]["temperature"])  # stored unconstrained
    code, stdout, err = run_cli(["evaluate", tmp_path / "straight", "-k", "20"], capsys)
    assert code == 0 and "importance-sampled, K = 20" in stdout, err
    assert run.epoch == 3
    code, stdout, err = run_cli(["report", tmp_path / "straight"], capsys)  # every figure the pair supports
    assert code == 0, err
    assert all((tmp_path / "straight" / "figures" / f"{name}.png").exists()
               for name in ("reconstructions", "prior_samples", "latent_means", "training", "kl_units"))
    assert "Your own pair" in (tmp_path / "straight" / "report.md").read_text()


def test_a_pair_whose_file_changed_or_went_is_refused_by_every_command(user_file, tmp_path, capsys):
    train(capsys, f"{user_file}:make_pair", tmp_path / "run", "--epochs", "1")
    user_file.write_text(USER_PAIR + "\n# edited\n")
    for argv in (["evaluate", tmp_path / "run"], ["report", tmp_path / "run"],
                 ["train", "--resume", tmp_path / "run", "--epochs", "2"]):
        line = one_line_error(*run_cli(argv, capsys)[::2])
        assert "has changed since this run was trained" in line and "restore that version" in line, line
    user_file.unlink()
    line = one_line_error(*run_cli(["evaluate", tmp_path / "run"], capsys)[::2])
    assert f"there is no file {user_file}" in line, line


@pytest.mark.parametrize("argv, words", [
    (["train", "--pair", "{file}:nothing", "--out", "{tmp}/x"], "defines no callable 'nothing'"),
    (["train", "--pair", "{file}", "--out", "{tmp}/x"], "is not FILE.py:FACTORY or MODULE:FACTORY"),
    (["train", "--pair", "no_such_module_here:make", "--out", "{tmp}/x"], "no module 'no_such_module_here'"),
    (["train", "--pair", "{file}:make_pair", "--latent-dim", "3", "--out", "{tmp}/x"], "drop --latent-dim"),
    (["train", "--pair", "{file}:shared_pair", "--objective", "rws", "--out", "{tmp}/x"],
     "is used both by the model's log p(x, z) at fixed z and by the guide's"),
    (["compare", "--pair", "{file}:make_pair", "--objectives", "elbo,enum", "--out", "{tmp}/x"],
     "cannot train with enum"),
])
def test_pair_refusals_are_one_sentence_before_any_work(user_file, tmp_path, capsys, argv, words):
    argv = [a.format(file=user_file, tmp=tmp_path) for a in argv]
    line = one_line_error(*run_cli(argv, capsys)[::2])
    assert words in line, line
    assert not (tmp_path / "x").exists()


def test_check_describes_the_pair_and_tabulates_each_objective(user_file, capsys):
    code, stdout, err = run_cli(["check", f"{user_file}:make_pair"], capsys)
    assert code == 0, err
    assert "guide samples: z (reparameterized)" in stdout and "data plate: pyro.plate('data') at dim=-1" in stdout
    rows = dict(line.split(None, 1) for line in stdout.split("\n\n")[1].splitlines()[1:])
    assert rows["elbo"] == rows["iwae"] == rows["rws"] == "ok", rows
    assert rows["enum"].startswith("refused: the enum objective"), rows


def test_the_conditional_example_gets_the_digit_labels_and_commands_that_need_images_alone_refuse(tmp_path, capsys):
    spec = f"{ROOT / 'scripts' / 'examples' / 'cvae.py'}:make_pair"
    train(capsys, spec, tmp_path / "cvae", "--epochs", "1")
    code, stdout, err = run_cli(["evaluate", tmp_path / "cvae", "-k", "10"], capsys)
    assert code == 0, err
    line = one_line_error(*run_cli(["outliers", tmp_path / "cvae", "--ood", "noise"], capsys)[::2])
    assert "also takes y with each image" in line, line
    code, _, err = run_cli(["report", tmp_path / "cvae"], capsys)  # the figures given each image's label
    assert code == 0, err
    assert all((tmp_path / "cvae" / "figures" / f"{name}.png").exists()
               for name in ("reconstructions", "prior_samples", "latent_means", "training", "kl_units"))
    assert "the manifold figure decodes a grid of z alone" in (tmp_path / "cvae" / "report.md").read_text()


def test_compare_of_a_pair_records_its_file_so_an_edit_is_caught_later(user_file, tmp_path, capsys):
    import hashlib

    code, _, err = run_cli(["compare", "--pair", f"{user_file}:make_pair", "--objectives", "elbo", "--epochs", "1",
                            "--particles", "2", "--eval-particles", "5", "--snr-samples", "2", "--out",
                            tmp_path / "cmp", "--no-progress"], capsys)
    assert code == 0, err
    recorded = json.load(open(tmp_path / "cmp" / "elbo" / "config.json"))
    assert recorded["pair_sha256"] == hashlib.sha256(user_file.read_bytes()).hexdigest()
    user_file.write_text(USER_PAIR + "\n# edited\n")
    line = one_line_error(*run_cli(["evaluate", tmp_path / "cmp" / "elbo"], capsys)[::2])
    assert "has changed since this run was trained" in line, line


GAPS_PAIRS = textwrap.dedent('''
    """A user's encoder with its own pyro.param (a learned scale), and a model with a global latent."""
    import pyro
    import pyro.distributions as dist
    import torch
    from pyro.distributions import constraints
    from torch import nn


    def data_plate(x, idx, n_train):
        return pyro.plate("data", n_train if idx is not None else x.shape[0], subsample=idx)


    class Decoder(nn.Module):
        def __init__(self, x_dim, n_train, shared_offset=False):
            super().__init__()
            self.net, self.n_train, self.shared_offset = nn.Linear(2, x_dim), n_train, shared_offset

        def model(self, x, idx=None):
            pyro.module("decoder", self)
            offset = pyro.sample("offset", dist.Normal(0.0, 1.0)) if self.shared_offset else 0.0
            with data_plate(x, idx, self.n_train):
                z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
                pyro.sample("x", dist.Bernoulli(logits=self.net(z) + offset).to_event(1), obs=x)


    class Encoder(nn.Module):
        def __init__(self, x_dim, n_train, shared_offset=False):
            super().__init__()
            self.net, self.n_train, self.shared_offset = nn.Linear(x_dim, 2), n_train, shared_offset

        def guide(self, x, idx=None):
            pyro.module("encoder", self)
            scale = pyro.param("q_scale", torch.full((2,), 0.5), constraint=constraints.positive)
            if self.shared_offset:
                pyro.sample("offset", dist.Normal(pyro.param("offset_loc", torch.tensor(0.0)), 0.1))
            with data_plate(x, idx, self.n_train):
                pyro.sample("z", dist.Normal(self.net(x), scale).to_event(1))


    def local(data):
        return Decoder(data.x_dim, data.x_train.shape[0]), Encoder(data.x_dim, data.x_train.shape[0])


    def with_global(data):
        n = data.x_train.shape[0]
        return Decoder(data.x_dim, n, True), Encoder(data.x_dim, n, True)
''')


@pytest.mark.slow
def test_gaps_of_a_users_encoder_refine_its_own_pyro_params_and_a_global_latent_is_refused(tmp_path, capsys):
    path = tmp_path / "gaps_pairs.py"
    path.write_text(GAPS_PAIRS)
    train(capsys, f"{path}:local", tmp_path / "local", "--epochs", "2")
    code, _, err = run_cli(["gaps", tmp_path / "local", "--points", "4", "--particles", "200", "--max-steps", "200"],
                           capsys)
    assert code == 0, err
    r = json.loads((tmp_path / "local" / "gaps.json").read_text())
    assert r["refined"] == "a copy per point", r
    assert r["amortization_gap"] > -4 * r["amortization_gap_se"] and r["approximation_gap"] > -4 * r["approximation_gap_se"]
    from ppl_vae.run import load

    pyro.clear_param_store()
    run = load(str(tmp_path / "local"), "cpu")
    traced = pyro.poutine.trace(run.guide.guide).get_trace(run.data.x_test[:1])
    assert "q_scale" in traced.nodes  # the encoder's own pyro.param is among what the refinement moves
    train(capsys, f"{path}:with_global", tmp_path / "global", "--epochs", "1")
    code, _, err = run_cli(["gaps", tmp_path / "global"], capsys)
    assert "'offset' is a global latent" in one_line_error(code, err)
    assert not (tmp_path / "global" / "gaps.json").exists()
