"""--optimizer / --optim-args: any torch.optim class or Pyro's ClippedAdam and AdagradRMSProp, resumed exactly."""

import pytest

from ppl_vae import Dataset, fit
from ppl_vae.errors import UsageError
from ppl_vae.guides.gaussian import DiagonalGaussian
from ppl_vae.io import checkpoint
from ppl_vae.models.vae import VAE


def make_pair(data):
    return VAE(data.x_dim, 2, (16,)), DiagonalGaussian(data.x_dim, 2, (16,))


@pytest.fixture
def images(digits):
    """Digits as images [N, 1, 8, 8]: the built-in networks take data in its own shape."""
    return Dataset.from_tensors(digits.x_train[:120].reshape(-1, 1, 8, 8), digits.x_test[:30].reshape(-1, 1, 8, 8),
                                binarize="dynamic")


def test_clipped_adam_decays_its_rate_per_step_and_a_resumed_run_matches_an_uninterrupted_one(images, tmp_path):
    settings = dict(batch_size=40, progress=False, device="cpu", optimizer="ClippedAdam",
                    optim_args={"lrd": 0.9, "clip_norm": 5.0})
    whole = fit(make_pair, images, epochs=3, **settings)
    fit(make_pair, images, out=str(tmp_path / "run"), epochs=2, **settings)
    resumed = fit(make_pair, images, out=str(tmp_path / "run"), resume=True, epochs=3, **settings)
    assert resumed[-1]["test_bound"] == whole[-1]["test_bound"]
    assert [m["lr"] for m in whole] == [1e-3] * 3  # the schedule's rate; ClippedAdam's own decay is within it
    state = checkpoint.load(tmp_path / "run" / checkpoint.NAME)["optim"]["dense"]
    assert state["param_groups"][0]["lr"] == pytest.approx(1e-3 * 0.9 ** 9)  # 9 steps of lrd = 0.9


@pytest.mark.parametrize("name, args", [("AdagradRMSProp", {"eta": 0.1, "t": 0.1}), ("SGD", {"momentum": 0.9}),
                                        ("AdamW", {"weight_decay": 0.01})])
def test_other_optimizers_train(images, name, args):
    history = fit(make_pair, images, epochs=2, batch_size=40, progress=False, device="cpu", optimizer=name,
                  optim_args=args)
    assert history[-1]["test_bound"] > history[0]["test_bound"] - 5  # trained, finite


@pytest.mark.parametrize("settings, message", [
    (dict(optimizer="Adamm"), "is not a torch.optim optimizer nor one of Pyro's"),
    (dict(optimizer="LBFGS"), "needs what one step cannot give it"),
    (dict(optim_args={"lr": 0.1}), "pass --lr instead"),
    (dict(optimizer="SGD", optim_args={"clip_norm": 1.0}), "do not fit SGD's constructor"),
])
def test_a_wrong_optimizer_is_refused_before_any_work(images, settings, message):
    with pytest.raises(UsageError, match=message):
        fit(make_pair, images, epochs=1, progress=False, device="cpu", **settings)
