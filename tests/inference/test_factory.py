"""Pairs built fresh per run: fit(make_pair, data) and compare(..., make_pair=...) call the factory after
seeding, record where it lives, and every command then works on those runs."""

import json

import pytest
import torch

from helpers import one_line_error, run_cli
from ppl_vae import data as datasets
from ppl_vae import fit, spec
from ppl_vae.config import Config
from ppl_vae.errors import UsageError
from ppl_vae.evaluation.compare import compare

PAIR = '''
import pyro
import pyro.distributions as dist
from torch import nn


class Decoder(nn.Module):
    def __init__(self, x_dim):
        super().__init__()
        self.net = nn.Linear(2, x_dim)

    def model(self, x):
        pyro.module("decoder", self)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.net(z)).to_event(1), obs=x)


class Encoder(nn.Module):
    def __init__(self, x_dim):
        super().__init__()
        self.net = nn.Linear(x_dim, 4)

    def guide(self, x):
        pyro.module("encoder", self)
        with pyro.plate("data", x.shape[0]):
            loc, log_scale = self.net(x).chunk(2, -1)
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


def make_pair(data):
    return Decoder(data.x_dim), Encoder(data.x_dim)
'''


@pytest.fixture
def make_pair(tmp_path):
    path = tmp_path / "pairs.py"
    path.write_text(PAIR)
    return spec.factory(f"{path}:make_pair")


def test_each_fit_of_a_factory_starts_from_fresh_weights_and_its_run_works_from_the_cli(make_pair, tmp_path, capsys):
    digits = datasets.load("digits", binarize="dynamic")
    first = fit(make_pair, digits, "iwae", particles=2, epochs=1, batch_size=300, progress=False, device="cpu",
                out=str(tmp_path / "run"))
    second = fit(make_pair, digits, "iwae", particles=2, epochs=1, batch_size=300, progress=False, device="cpu")
    assert first[0]["test_bound"] == second[0]["test_bound"]  # not a warm start from the first's weights
    recorded = json.load(open(tmp_path / "run" / "config.json"))
    assert recorded["pair"].endswith("pairs.py:make_pair") and recorded["objective"] == "iwae"
    code, out, err = run_cli(["evaluate", tmp_path / "run", "-k", "10"], capsys)
    assert code == 0 and "K = 10" in out, err


def test_a_run_of_objects_or_of_tensors_from_python_is_refused_by_the_cli_with_one_sentence(make_pair, tmp_path, capsys):
    digits = datasets.load("digits", binarize="dynamic")
    fit(*make_pair(digits), digits, epochs=1, batch_size=300, progress=False, device="cpu", out=str(tmp_path / "objs"))
    line = one_line_error(*run_cli(["evaluate", tmp_path / "objs"], capsys)[::2])
    assert "passed as objects" in line and "fit(make_pair, data)" in line, line
    tensors = {"x": digits.x_train[:300].bernoulli(generator=torch.Generator().manual_seed(0))}
    fit(make_pair, tensors, epochs=1, batch_size=100, progress=False, device="cpu", out=str(tmp_path / "tensors"))
    line = one_line_error(*run_cli(["evaluate", tmp_path / "tensors"], capsys)[::2])
    assert "trained on tensors passed to fit from Python (dataset 'custom')" in line, line


def test_compare_builds_the_factory_per_objective_and_refuses_one_it_cannot_train(make_pair, tmp_path):
    digits = datasets.load("digits", binarize="dynamic")
    config = Config.from_dict({"epochs": 1, "batch_size": 300, "particles": 2, "device": "cpu"})
    with pytest.raises(UsageError, match="cannot train with enum"):
        compare(config, ["elbo", "enum"], str(tmp_path / "refused"), make_pair=make_pair, data=digits,
                eval_particles=10, snr_samples=3, progress=False)
    assert not (tmp_path / "refused").exists()
    rows = compare(config, ["elbo", "iwae"], str(tmp_path / "cmp"), make_pair=make_pair, data=digits,
                   eval_particles=10, snr_samples=3, progress=False)
    assert [r["objective"] for r in rows] == ["elbo", "iwae"]
    assert (tmp_path / "cmp" / "comparison.md").exists()
    assert all(json.load(open(tmp_path / "cmp" / name / "config.json"))["pair"].endswith("pairs.py:make_pair")
               for name in ("elbo", "iwae"))


def test_the_factory_form_takes_data_by_keyword_and_records_derived_data_as_custom(make_pair, tmp_path, capsys):
    digits = datasets.load("digits", binarize="dynamic")
    fit(make_pair, data=digits, epochs=1, batch_size=300, progress=False, device="cpu", out=str(tmp_path / "kw"))
    assert json.load(open(tmp_path / "kw" / "config.json"))["dataset"] == "digits"
    # the digits with an input beside them are not what ppl_vae.data.load("digits") gives again
    from ppl_vae import Dataset

    derived = Dataset.from_tensors({"x": digits.x_train, "w": torch.ones(digits.x_train.shape[0])}, name="digits")
    with pytest.raises(UsageError, match="named input 'w' is a parameter of neither"):
        fit(make_pair, derived, epochs=1, progress=False, device="cpu")
    seeded = datasets.load("digits", binarize="static", seed=5)  # another seed's static draw
    fit(make_pair, seeded, epochs=1, batch_size=300, progress=False, device="cpu", out=str(tmp_path / "seeded"))
    assert json.load(open(tmp_path / "seeded" / "config.json"))["dataset"] == "custom"
    line = one_line_error(*run_cli(["evaluate", tmp_path / "seeded"], capsys)[::2])
    assert "trained on tensors passed to fit from Python" in line, line
