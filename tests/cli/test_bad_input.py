"""Every kind of bad input: one sentence on stderr, exit code 2, nothing on disk changed.

One row per bad input: the command line (``{name}`` are folders prepared below) and a
regular expression the sentence must contain.
"""

import json
import pickle
import re
import shutil

import pytest
import torch

from helpers import one_line_error, run_cli
from ppl_vae import registry
from ppl_vae.io import checkpoint
from ppl_vae.inference import objectives
from ppl_vae.errors import UsageError

CHOICE = r"invalid choice: '{}' \(choose from '?{}"

CASES = [
    # unknown names: the valid ones are listed
    ("train --out {new} --dataset cifar", CHOICE.format("cifar", "digits")),
    ("train --out {new} --model nope", CHOICE.format("nope", "vae")),
    ("train --out {new} --guide nope", CHOICE.format("nope", "gaussian")),
    ("train --out {new} --objective magic", CHOICE.format("magic", "elbo")),
    ("train --out {new} --activation nope", CHOICE.format("nope", "relu")),
    ("train --out {new} --binarize maybe", CHOICE.format("maybe", "dynamic")),
    ("train --out {new} --device tpu", CHOICE.format("tpu", "auto")),
    ("train --resume {unknown_model}", "unknown model 'nope'; choose one of vae"),
    ("evaluate {unknown_model}", "unknown model 'nope'; choose one of vae"),
    ("train --resume {unknown_objective}", "unknown objective 'magic'; choose one of elbo"),
    ("train --resume {unknown_dataset}", "unknown dataset 'cifar'; choose one of digits"),
    # numbers out of range
    ("train --out {new} --particles 0", "--particles: expected an integer ≥ 1, got '0'"),
    ("train --resume {zero_particles}", "--particles must be at least 1"),
    ("evaluate {run} --particles -3", "--particles/-k: expected an integer ≥ 1"),
    ("train --out {new} --epochs -1", "--epochs: expected an integer ≥ 0"),
    ("train --out {new} --batch-size 0", "--batch-size: expected an integer ≥ 1"),
    ("train --out {new} --latent-dim 0", "--latent-dim: expected an integer ≥ 1"),
    ("train --out {new} --hidden 0", "every --hidden width must be at least 1"),
    ("train --out {new} --hidden 2x", "comma-separated integers"),
    ("train --out {new} --lr -1", "--lr: expected a finite number > 0"),
    ("train --out {new} --lr nan", "--lr: expected a finite number > 0"),
    ("train --out {new} --lr-gamma inf", "--lr-gamma: expected a finite number > 0"),
    ("train --out {new} --seed -1", "--seed: expected an integer seed from 0 to 4294967295"),
    ("train --out {new} --seed 4294967296", "--seed: expected an integer seed"),
    ("evaluate {run} --seed x", "--seed: expected an integer seed"),
    ("train --out {new} --pad 4", "--pad 4 is smaller than the 8x8 images"),
    ("train --out {new} --checkpoint-every 0", "--checkpoint-every: expected an integer ≥ 1"),
    ("train --out {new} --nan-retries -1", "--nan-retries: expected an integer ≥ 0"),
    ("train --out {new} --nan-lr-factor 1.5", r"--nan-lr-factor: expected a number in \(0, 1\]"),
    # accepted by Pyro, meaningless here
    ("train --out {new} --objective enum", "--objective enum sums discrete latent variables out exactly"),
    ("compare --out {new} --guide delta --objectives elbo", "--guide delta is a point mass"),
    # data files
    ("train --out {new} --dataset mnist --data-dir {empty}", "files were not found in .*--download"),
    ("outliers {run} --ood mnist --data-dir {empty}", "files were not found in .*--download"),
    # run directories
    ("train", "one of the arguments --out --resume is required"),
    ("train --out {new} --resume {run}", "not allowed with argument"),
    ("train --resume {missing}", "run directory .* does not exist"),
    ("train --resume {empty}", "is not a ppl-vae run directory"),
    ("evaluate {missing}", "run directory .* does not exist"),
    ("evaluate {empty}", "is not a ppl-vae run directory"),
    ("evaluate {file}", "run directory .* is a file, not a folder"),
    ("evaluate {bad_json}", r"config.json cannot be read \(JSONDecodeError\)"),
    ("evaluate {partial_config}", r"is not a ppl-vae config \(missing dataset, guide, objective\)"),
    ("train --resume {partial_config}", "is not a ppl-vae config"),
    # output folders
    ("train --out {file}", r"cannot write to the output folder .* \(File exists\)"),
    ("train --out {file}/run", r"cannot write to the output folder .* \(Not a directory\)"),
    ("train --out {run}", "already holds a run; continue it with --resume"),
    # checkpoints
    ("evaluate {corrupt}", "is corrupt or not a ppl-vae checkpoint"),
    ("train --resume {corrupt}", "is corrupt or not a ppl-vae checkpoint"),
    ("evaluate {truncated}", "is corrupt or not a ppl-vae checkpoint"),
    ("evaluate {foreign}", "is not a ppl-vae checkpoint"),
    ("train --resume {newer}", "has checkpoint version 999, but this ppl-vae reads version 1"),
    ("evaluate {newer}", "has checkpoint version 999"),
    ("evaluate {malicious}", r"is corrupt or not a ppl-vae checkpoint \(UnpicklingError\)"),
    ("train --resume {malicious}", r"is corrupt or not a ppl-vae checkpoint \(UnpicklingError\)"),
    ("evaluate {mismatch}", "does not match its config.json"),
    ("train --resume {mismatch}", "has other layers than this one"),
    pytest.param("train --out {new} --objective renyi --alpha 1", "alpha|α",
                 marks=pytest.mark.skipif("renyi" not in objectives.OBJECTIVES,
                                          reason="the Rényi objective is not registered on this branch")),
    pytest.param("train --out {new} --device cuda", "--device cpu",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")),
]


class Evil:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def altered(world, name, **config):
    """A copy of the trained run whose config.json has ``config`` changed."""
    path = world / name
    shutil.copytree(world / "run", path)
    data = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**data, **config}))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A trained run and every kind of broken copy of it."""
    from ppl_vae.cli import main

    world = tmp_path_factory.mktemp("bad_input")
    assert main(["train", "--out", str(world / "run"), "--epochs", "1", "--hidden", "16", "--latent-dim", "2",
                 "--no-progress"]) == 0
    (world / "empty").mkdir()
    (world / "file").write_text("a file where a folder should be")
    altered(world, "unknown_model", model="nope")
    altered(world, "unknown_objective", objective="magic")
    altered(world, "unknown_dataset", dataset="cifar")
    altered(world, "zero_particles", particles=0)
    altered(world, "mismatch", hidden=[8])
    (altered(world, "bad_json") / "config.json").write_text("{not json")
    (altered(world, "partial_config") / "config.json").write_text('{"model": "vae"}')
    good = (world / "run" / "checkpoint.pt").read_bytes()
    for name, content in [("corrupt", b"\x80\x02garbage"), ("truncated", good[:300])]:
        (altered(world, name) / "checkpoint.pt").write_bytes(content)
    torch.save({"state_dict": {}}, altered(world, "foreign") / "checkpoint.pt")
    torch.save({"format": checkpoint.FORMAT, "version": 999}, altered(world, "newer") / "checkpoint.pt")
    torch.save({"format": checkpoint.FORMAT, "version": checkpoint.VERSION, "x": Evil(str(world / "pwned"))},
               altered(world, "malicious") / "checkpoint.pt")
    return world


def snapshot(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("command, expected", CASES, ids=[getattr(c, "values", c)[0] for c in CASES])
def test_bad_input_is_one_sentence_exit_2_and_changes_nothing(world, tmp_path, capsys, command, expected):
    paths = {p.name: p for p in world.iterdir()} | {"new": tmp_path / "new", "missing": world / "missing"}
    argv = command.format(**paths).split()
    before = snapshot(world)
    line = one_line_error(*run_cli(argv, capsys)[::2])
    assert re.search(expected, line), line
    advised = set(re.findall(r"--[a-z][a-z0-9-]*", re.sub(r"`[^`]*`", "", line)))  # quoted commands aside
    offered = {o for a in subcommand_parsers()[argv[0]]._actions for o in a.option_strings}
    assert advised <= offered, f"{line!r} names {advised - offered}, which `ppl-vae {argv[0]}` does not take"
    assert snapshot(world) == before
    assert not (paths["new"].exists() and any(paths["new"].iterdir()))  # a new run directory gets no file


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_malicious_checkpoint_runs_no_code(world, capsys):
    with open(world / "pickled.pt", "wb") as f:  # a plain pickle too, not only torch's zip format
        pickle.dump({"format": checkpoint.FORMAT, "x": Evil(str(world / "pwned"))}, f)
    with pytest.raises(UsageError, match="corrupt"):
        checkpoint.load(world / "pickled.pt")
    run_cli(["evaluate", world / "malicious"], capsys)
    assert not (world / "pwned").exists()
    state = torch.load(world / "malicious" / "checkpoint.pt", weights_only=False)  # what weights_only prevents
    state["x"].close()
    assert (world / "pwned").exists()  # the payload was live
    (world / "pwned").unlink()


def test_objective_options_are_checked_before_any_work(monkeypatch, tmp_path, capsys):
    """An objective's factory refusing its options (as Rényi refuses α = 1) stops the run first."""
    def picky(particles=1, **_):
        raise UsageError(f"the picky objective needs --particles ≥ 2, got {particles}.")

    monkeypatch.setitem(objectives.OBJECTIVES, "picky", picky)
    code, _, err = run_cli(["train", "--out", tmp_path / "new", "--objective", "picky"], capsys)
    assert "picky objective needs --particles ≥ 2" in one_line_error(code, err)
    assert not (tmp_path / "new").exists()


def test_incompatible_combinations_are_refused_before_any_work(monkeypatch, tmp_path, capsys):
    """registry.check owns the table of model/guide/objective combinations; it runs first."""
    def validate(config):
        raise UsageError(f"the {config.pair.guide} guide cannot be trained with {config.inference.objective}; "
                         f"choose another --objective.")

    monkeypatch.setattr(registry, "check", validate)
    code, _, err = run_cli(["train", "--out", tmp_path / "new"], capsys)
    assert "gaussian guide cannot be trained with elbo" in one_line_error(code, err)
    assert not (tmp_path / "new").exists()


def subcommand_parsers():
    from ppl_vae.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices


def test_every_option_value_is_range_checked_by_the_parser():
    """A bare int or float would let -1, nan or inf through to the work and end in a traceback."""
    for name, parser in subcommand_parsers().items():
        for action in parser._actions:
            assert action.type not in (int, float), f"ppl-vae {name} {action.option_strings}: use a checked type"


@pytest.mark.parametrize("command", sorted(subcommand_parsers()))
def test_every_command_refuses_a_negative_seed(command, world, capsys):
    run_dir = world / "run"
    argv = [command, *(["--out", world / "new"] if command in ("train", "compare", "baselines") else [run_dir])]
    parser = subcommand_parsers()[command]
    if any("--seed" in a.option_strings for a in parser._actions):
        extra = ["--mask", "top-half"] if command == "impute" else ["--ood", "noise"] if command == "outliers" else []
        line = one_line_error(*run_cli([*argv, *extra, "--seed", "-1"], capsys)[::2])
        assert "--seed: expected an integer seed" in line
