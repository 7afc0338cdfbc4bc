"""The typed run configuration: one default per setting, unknown keys refused, TOML in and out."""

import json

import pytest

from helpers import one_line_error, run_cli
from ppl_vae import config as config_module
from ppl_vae.config import Config, default
from ppl_vae.errors import UsageError


def test_every_setting_has_one_default_and_a_unique_key():
    keys = [f for section in config_module.SECTIONS.values() for f in section.__dataclass_fields__]
    assert len(keys) == len(set(keys))
    assert default("lr") == 1e-3 and default("hidden") == [200] and default("guide") is None


def test_unknown_keys_are_refused_with_the_nearest_valid_one():
    with pytest.raises(UsageError, match=r"unknown setting 'latnet_dim' in here; did you mean 'latent_dim'\?"):
        Config.from_dict({"latnet_dim": 4}, "here")
    with pytest.raises(UsageError, match="belongs in section \\[training\\], not \\[data\\]"):
        Config.from_dict({"data": {"lr": 0.1}})


def test_config_json_of_the_first_version_still_reads():
    old = {"dataset": "digits", "data_dir": "data", "binarize": "dynamic", "model": "vae", "guide": "gaussian",
           "latent_dim": 8, "hidden": [200], "activation": "relu", "likelihood": "bernoulli", "objective": "elbo",
           "particles": 1, "epochs": 100, "batch_size": 100, "lr": 0.001, "lr_milestones": [], "lr_gamma": 0.1,
           "seed": 0, "drop_last": True}  # no schedule, nan_retries, config_version: their defaults hold
    config = Config.from_dict(old)
    assert config.training.schedule == "joint" and config.training.nan_retries == 1
    assert config.to_dict()["config_version"] == config_module.CONFIG_VERSION


def test_a_preset_fills_what_is_not_given():
    config = Config.from_dict({"preset": "iwae", "latent_dim": 3})
    assert config.pair.hidden == [200, 200] and config.pair.activation == "tanh" and config.pair.latent_dim == 3


def test_toml_round_trip(tmp_path):
    config = Config.from_dict({"latent_dim": 3, "lr_milestones": [5, 9], "checkpoint_every": 7, "data_dir": 'a"b'})
    path = tmp_path / "run.toml"
    path.write_text(config.to_toml())
    again = Config.from_dict(Config.from_toml(str(path)))
    assert again == config


def test_train_with_a_config_file_and_flags_over_it(tmp_path, capsys):
    (tmp_path / "run.toml").write_text('[pair]\nlatent_dim = 3\nhidden = [16]\n[training]\nepochs = 1\nlr = 0.01\n')
    code, _, err = run_cli(["train", "--config", tmp_path / "run.toml", "--lr", "0.02", "--out", tmp_path / "r",
                            "--no-progress"], capsys)
    assert code == 0, err
    written = json.loads((tmp_path / "r" / "config.json").read_text())
    assert (written["latent_dim"], written["hidden"], written["epochs"], written["lr"]) == (3, [16], 1, 0.02)
    code, out, err = run_cli(["config", tmp_path / "r"], capsys)
    assert code == 0 and "[training]" in out and "lr = 0.02" in out, err
    (tmp_path / "again.toml").write_text(out)  # ppl-vae config's output trains the same run again
    code, _, err = run_cli(["train", "--config", tmp_path / "again.toml", "--out", tmp_path / "r2", "--no-progress"],
                           capsys)
    assert code == 0, err
    again = json.loads((tmp_path / "r2" / "config.json").read_text())
    assert again == written
    bounds = lambda run: [(m["train_bound"], m["test_bound"]) for m in map(json.loads, (tmp_path / run / "metrics.jsonl")
                                                                              .read_text().splitlines())]  # noqa: E731
    assert bounds("r") == bounds("r2")


@pytest.mark.parametrize("argv, text", [
    (["train", "--out", "{tmp}/r", "--latnet-dim", "4"], "unrecognized arguments: --latnet-dim 4; did you mean --latent-dim?"),
    (["train", "--out", "{tmp}/r", "--config", "{tmp}/bad.toml"], "unknown setting 'latnet_dim' in {tmp}/bad.toml, "
                                                                "section [pair]; did you mean 'latent_dim'?"),
    (["train", "--out", "{tmp}/r", "--config", "{tmp}/broken.toml"], "is not valid TOML"),
    (["train", "--out", "{tmp}/r", "--config", "{tmp}/typed.toml"], "setting 'epochs' in {tmp}/typed.toml must be int, "
                                                                  "got 'ten'"),
    (["train", "--out", "{tmp}/r", "--config", "{tmp}/missing.toml"], "cannot read the config file"),
    (["train", "--out", "{tmp}/r", "--objective", "elbo", "--alpha", "0.3"], "--alpha is an option of renyi, not of"),
])
def test_misspelt_or_misplaced_settings_are_one_sentence(tmp_path, capsys, argv, text):
    (tmp_path / "bad.toml").write_text("[pair]\nlatnet_dim = 4\n")
    (tmp_path / "broken.toml").write_text("[pair\n")
    (tmp_path / "typed.toml").write_text('epochs = "ten"\n')
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert text.format(tmp=tmp_path) in one_line_error(*run_cli(argv, capsys)[::2])
    assert not (tmp_path / "r").exists()
