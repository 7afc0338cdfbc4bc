"""The command line on your own data: --data FILE (named tensors, no code), next to --pair."""

import json

import numpy as np
import pytest
import torch

import ppl_vae
from helpers import one_line_error, run_cli

PAIR = '''
import pyro
import pyro.distributions as dist
import torch
from torch import nn


class CVAE(nn.Module):
    """p(x | z, y): the digit's label y reaches the decoder; the images arrive as the file holds them."""

    def __init__(self, x_dim):
        super().__init__()
        self.decoder, self.encoder = nn.Linear(2 + 10, x_dim), nn.Linear(x_dim, 4)

    def model(self, x, y):
        pyro.module("cvae", self)
        assert x.shape[1:] == (8, 8), x.shape  # as the file holds them, not flattened
        x = x.reshape(x.shape[0], -1)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            onehot = nn.functional.one_hot(y, 10).to(x).expand(*z.shape[:-1], 10)
            pyro.sample("x", dist.Bernoulli(logits=self.decoder(torch.cat([z, onehot], -1))).to_event(1), obs=x)

    def guide(self, x, y):
        x = x.reshape(x.shape[0], -1)
        with pyro.plate("data", x.shape[0]):
            loc, log_scale = self.encoder(x).chunk(2, -1)
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


def make_pair(data):
    pair = CVAE(data.x_dim)
    return pair, pair
'''


@pytest.fixture
def files(tmp_path):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(60, 8, 8, generator=g)  # grey levels, unflattened
    labels = torch.randint(10, (60,), generator=g)
    torch.save({"x": images, "y": labels}, tmp_path / "digits.pt")
    (tmp_path / "pair.py").write_text(PAIR)
    return tmp_path


def test_a_pair_trains_evaluates_and_reports_on_a_data_file(files, capsys):
    run = files / "run"
    code, _, err = run_cli(["train", "--pair", f"{files / 'pair.py'}:make_pair", "--data", files / "digits.pt",
                            "--epochs", "2", "--batch-size", "16", "--out", run, "--no-progress"], capsys)
    assert code == 2 and "binarize the data (--binarize dynamic or static)" in err  # grey levels, as given
    code, _, err = run_cli(["train", "--pair", f"{files / 'pair.py'}:make_pair", "--data", files / "digits.pt",
                            "--binarize", "dynamic", "--epochs", "2", "--batch-size", "16", "--out", run,
                            "--no-progress"], capsys)
    assert code == 0, err
    recorded = json.loads((run / "config.json").read_text())
    assert recorded["dataset"] == "file" and recorded["data_file"] == str(files / "digits.pt")
    assert len(recorded["data_sha256"]) == 64
    code, out, err = run_cli(["evaluate", run, "-k", "10"], capsys)
    assert code == 0 and "test NLL = −log p(x | y)" in out and "12 test points" in out, err  # a fifth of 60
    code, _, err = run_cli(["report", run], capsys)
    assert code == 0, err
    (run / "report.md").unlink()
    assert ppl_vae.report(run) == str(run / "report.md") and (run / "report.md").is_file()  # the same from Python

    torch.save({"x": torch.rand(60, 8, 8), "y": torch.zeros(60, dtype=torch.long)}, files / "digits.pt")
    line = one_line_error(*run_cli(["evaluate", run], capsys)[::2])
    assert "has changed since this run was trained on it" in line, line


@pytest.mark.parametrize("name, write, words", [
    ("code.pt", lambda p: torch.save({"x": torch.zeros(3, 2), "f": print}, p), "could not be read as .pt"),
    ("objects.npz", lambda p: np.savez(p, x=np.array([object()], dtype=object)), "could not be read as .npz"),
    ("data.pkl", lambda p: p.write_bytes(b"\x80\x04."), "a .pkl file is not read (it could hold code)"),
    ("list.pt", lambda p: torch.save([torch.zeros(3)], p), "holds list, not a mapping of named tensors"),
    ("ragged.pt", lambda p: torch.save({"x": torch.zeros(5, 2), "y": torch.zeros(4)}, p), "not one row per data"),
    ("sequences.pt", lambda p: torch.save({"x": [torch.zeros(7, 3), torch.zeros(5, 3)]}, p),
     "'x' is a list of tensors of different shapes, sequences of different lengths perhaps; pad them"),
])
def test_a_data_file_that_is_not_plain_named_tensors_is_refused_before_any_work(files, capsys, name, write, words):
    write(files / name)
    line = one_line_error(*run_cli(["train", "--pair", f"{files / 'pair.py'}:make_pair", "--data", files / name,
                                    "--out", files / "x"], capsys)[::2])
    assert words in line, line
    assert not (files / "x").exists()


def test_a_run_trained_from_python_on_a_data_file_is_evaluated_by_the_command_line(files, capsys):
    make_pair = ppl_vae.spec.factory(f"{files / 'pair.py'}:make_pair")
    data = ppl_vae.data.load_file(str(files / "digits.pt"), binarize="dynamic")
    ppl_vae.fit(make_pair, data, epochs=1, batch_size=16, out=str(files / "py-run"), progress=False, device="cpu")
    recorded = json.loads((files / "py-run" / "config.json").read_text())
    assert recorded["dataset"] == "file" and recorded["data_file"] == str(files / "digits.pt")
    code, out, err = run_cli(["evaluate", files / "py-run", "-k", "10"], capsys)
    assert code == 0 and "12 test points" in out, err

