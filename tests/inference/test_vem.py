"""Variational EM: E-steps move only the batch's q, M-steps only θ; it trains and resumes exactly."""

import pyro
import torch

from ppl_vae.guides.local import LocalGaussian
from ppl_vae.models.vae import VAE
from ppl_vae import Dataset, fit
from ppl_vae.io import checkpoint
from ppl_vae.inference.vem import VEMStep

import helpers


def pair(x_dim=64, n=1500, seed=0):
    torch.manual_seed(seed)
    return VAE(x_dim, 3, (32,)), LocalGaussian(n, 3)


def training_digits(digits):
    """The digits' training split alone: no test set, so no per-test-point refitting."""
    return Dataset.from_tensors(digits.x_train, binarize="dynamic")


def snapshot(*modules):
    return {f"{i}.{k}": v.detach().clone() for i, m in enumerate(modules) for k, v in m.state_dict().items()}


def test_e_steps_move_only_the_batch_rows_and_m_steps_only_theta():
    x = torch.bernoulli(torch.full((30, 12), 0.3))
    vae, q = pair(12, 30)
    t = helpers.trainer(vae, q, Dataset.from_tensors(x), epochs=1, batch_size=10, lr=1e-2, step=VEMStep(3))
    idx = torch.arange(5, 15)
    before = snapshot(vae, q)
    t.step_rule.e_svi.step(x[idx], idx)
    after_e = snapshot(vae, q)
    assert all(torch.equal(before[k], after_e[k]) for k in before if k.startswith("0."))  # θ fixed
    for key in ("1.loc", "1.raw_scale"):
        moved = (after_e[key] != before[key]).any(-1)
        assert moved[idx].all() and not moved[:5].any() and not moved[15:].any()
    t.train_step(x[idx], idx)  # the E-steps' gradients on θ must not leak into the M-step or later steps
    assert all(p.grad is None for _, p in pyro.get_param_store().named_parameters())
    before = snapshot(vae, q)
    t.step_rule.m_svi.step(x[idx], idx)
    after_m = snapshot(vae, q)
    assert all(torch.equal(before[k], after_m[k]) for k in before if k.startswith("1."))  # q fixed
    assert any(not torch.equal(before[k], after_m[k]) for k in before if k.startswith("0."))


def test_vem_trains_the_local_guide(digits):
    history = fit(*pair(), training_digits(digits), epochs=4, lr=3e-3, progress=False, schedule="vem", e_steps=3)
    bounds = [m["train_bound"] for m in history]
    assert bounds[-1] > bounds[0] + 1.0, bounds


def test_vem_resumes_bit_identically(digits, tmp_path):
    data = training_digits(digits)
    options = dict(lr=3e-3, progress=False, schedule="vem", e_steps=2)
    straight = fit(*pair(), data, epochs=3, out=str(tmp_path / "a"), **options)
    fit(*pair(), data, epochs=1, out=str(tmp_path / "b"), **options)
    resumed = fit(*pair(seed=5), data, epochs=3, out=str(tmp_path / "b"), resume=True, **options)
    a = checkpoint.load(tmp_path / "a" / "checkpoint.pt")
    b = checkpoint.load(tmp_path / "b" / "checkpoint.pt")
    assert all(torch.equal(a["params"][k], b["params"][k]) for k in a["params"])
    assert [r["train_bound"] for r in resumed] == [r["train_bound"] for r in straight]
    assert a["config"]["schedule"] == "vem" and a["config"]["e_steps"] == 2
