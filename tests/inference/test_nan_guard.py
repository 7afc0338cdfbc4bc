"""Numerical faults: a non-finite step moves nothing, training rolls back with a smaller learning
rate, and when faults persist it stops with one sentence and the last good checkpoint intact."""

import dataclasses
import re

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO

from helpers import run_cli
from ppl_vae import fit
from ppl_vae.io import checkpoint
from ppl_vae.inference import objectives
from ppl_vae.io.rundir import read_jsonl
from ppl_vae.inference.guard import GuardedSVI, NonFinite
from ppl_vae.inference.trainer import Diverged
from helpers import pair


class Poisoned(Trace_ELBO):
    """The ELBO of ``objectives.make("elbo")``, reported as NaN on the calls numbered in ``bad``;
    the gradients stay finite."""

    def __init__(self, bad):
        super().__init__(max_plate_nesting=1)
        self.bad, self.calls = bad, 0

    def loss_and_grads(self, model, guide, *args, **kwargs):
        self.calls += 1
        value = super().loss_and_grads(model, guide, *args, **kwargs)
        return float("nan") if self.calls in self.bad else value


def poisoned(bad):
    return dataclasses.replace(objectives.make("elbo"), loss=Poisoned(bad))  # trained as written


def params():
    return {name: p.detach().clone() for name, p in pyro.get_param_store().named_parameters()}


def test_a_nan_gradient_moves_no_parameter(digits):
    """GuardedSVI checks before the optimizer: parameters and Adam's state stay as they were."""
    model, guide = pair(digits)
    target = "encoder$$$body.0.weight"

    class NaNGradient(Trace_ELBO):
        poison = False

        def loss_and_grads(self, *args):
            loss = super().loss_and_grads(*args)
            if self.poison:
                pyro.get_param_store().get_param(target).unconstrained().grad[0, 0] = float("nan")
            return loss

    loss = NaNGradient(max_plate_nesting=1)
    optim = pyro.optim.Adam({"lr": 1e-2})
    svi = GuardedSVI(model.model, guide.guide, optim, loss=loss)
    x = digits.x_train[:100].bernoulli()
    svi.step(x)
    before, adam = params(), optim.get_state()[target]["state"][0]["exp_avg"].clone()
    loss.poison = True
    with pytest.raises(NonFinite, match=re.escape(f"the gradient of {target} was not finite")):
        svi.step(x)
    assert all(torch.equal(before[k], v) for k, v in params().items())
    assert torch.equal(optim.get_state()[target]["state"][0]["exp_avg"], adam)
    loss.poison = False
    svi.step(x)  # the NaN left no gradient behind
    assert all(torch.isfinite(v).all() for v in params().values()) and not torch.equal(params()[target], before[target])


@pytest.mark.parametrize("bad, retries, factor", [({20}, 1, 0.5), ({20, 21}, 2, 0.25)])
def test_a_nan_rolls_back_and_lowers_the_learning_rate(digits, tmp_path, capsys, bad, retries, factor):
    """Call 20 is step 5 of epoch 2 (15 steps per epoch): training goes back to the end of epoch 1
    and continues with lr × factor per fault, exactly like a run whose schedule did that."""
    history = fit(*pair(digits), digits, poisoned(bad), epochs=3, out=str(tmp_path / "a"), progress=False,
                  nan_retries=retries, nan_lr_factor=factor)
    assert "epoch 2, step 20 (elbo): the loss was not finite; back to step 15" in capsys.readouterr().err
    gamma = factor ** len(bad)
    reference = fit(*pair(digits), digits, epochs=3, lr_milestones=[1], lr_gamma=gamma, out=str(tmp_path / "b"),
                    progress=False, jit=False)  # eager, as the poisoned loss is
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(history) == strip(reference)
    assert [r["lr"] for r in history] == [1e-3, 1e-3 * gamma, 1e-3 * gamma]
    a, b = (checkpoint.load(tmp_path / d / "checkpoint.pt")["params"] for d in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_persistent_nans_stop_training_with_the_last_checkpoint_intact(digits, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(Diverged) as stopped:
        fit(*pair(digits), digits, poisoned(range(20, 10**6)), epochs=3, out=str(out), progress=False)
    message = str(stopped.value)
    assert message.startswith("training stopped at epoch 2, step 16 (elbo): the loss was not finite even after "
                              "1 rollback(s) with the learning rate down to 0.0005;"), message
    assert f"the checkpoint in {out} (epoch 1, step 15) is intact" in message
    fit(*pair(digits), digits, epochs=1, out=str(tmp_path / "one"), progress=False, jit=False)
    kept, one = (checkpoint.load(d / "checkpoint.pt") for d in (out, tmp_path / "one"))
    assert kept["step"] == 15 and all(torch.equal(kept["params"][k], one["params"][k]) for k in one["params"])
    assert [r["epoch"] for r in read_jsonl(out / "metrics.jsonl")] == [1]


def test_a_diverging_cli_run_exits_3_with_one_sentence(tmp_path, capsys):
    """A learning rate of 1e30 sends the encoder's outputs to NaN within two steps."""
    out = tmp_path / "run"
    code, _, err = run_cli(["train", "--out", out, "--lr", "1e30", "--hidden", "16", "--no-progress"], capsys)
    assert code == 3 and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("ppl-vae train: training stopped at epoch 1, step 2 (elbo): a value at sample site 'z' "
                           "was NaN or outside its support"), last
    assert "is intact, so train again with a smaller --lr." in last
    assert checkpoint.load(out / "checkpoint.pt")["step"] == 0


def test_out_of_support_data_anywhere_is_refused_before_training_with_the_site_named(digits):
    """Steps run without Pyro's checks, so one pass over the data makes them first: a grey value in
    binary data under a Bernoulli likelihood, at point 1200 of 1500, is refused before any step."""
    from ppl_vae.errors import UsageError

    class UserVAE(torch.nn.Module):  # a Bernoulli written as users write it, with Pyro's checks
        def __init__(self):
            super().__init__()
            self.enc, self.dec = torch.nn.Linear(64, 4), torch.nn.Linear(2, 64)

        def model(self, x, idx=None):
            pyro.module("user_vae", self)
            with pyro.plate("data", x.shape[0]):
                z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
                pyro.sample("x", dist.Bernoulli(logits=self.dec(z)).to_event(1), obs=x)

        def guide(self, x, idx=None):
            pyro.module("user_vae", self)
            loc, log_scale = self.enc(x).chunk(2, -1)
            with pyro.plate("data", x.shape[0]):
                pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))

    x = torch.bernoulli(torch.full((1500, 64), 0.3), generator=torch.Generator().manual_seed(0))
    x[1200, 5] = 0.5
    module = UserVAE()
    with pytest.raises(UsageError) as refused:
        fit(module, module, x, epochs=1, progress=False)
    message = str(refused.value)
    assert message.startswith("the model and guide fail Pyro's checks on training points 1000–1499 ("), message
    assert "support" in message and "; fix the data or the program" in message, message
    assert message.endswith("binarize the data (--binarize dynamic or static) or give the model a likelihood for what "
                            "it holds"), message  # grey levels under a Bernoulli likelihood: the usual cause


@pytest.mark.parametrize("validate", [False, True])
def test_steps_run_without_pyros_checks_unless_validate(digits, validate):
    from pyro.infer.util import is_validation_enabled

    model, guide = pair(digits)
    seen = []

    def recording_model(x, idx=None):
        seen.append(is_validation_enabled())
        return model.model(x, idx)

    fit(recording_model, guide.guide, digits, epochs=1, progress=False, validate=validate, jit=False)
    assert seen[0] is True  # the checks before training
    assert set(seen[-16:]) == {validate}  # the epoch's 15 steps and its test bound
    assert is_validation_enabled()  # the caller's setting, restored
