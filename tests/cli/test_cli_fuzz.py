"""Random option values never produce a traceback: the CLI exits with 0 or 2, never raises.

An example sets a few options, each to garbage text or to a number near its valid range (sizes
stay small so the networks build in milliseconds); ``--epochs 0`` comes last, so an example
parses, validates and builds everything but trains no step.
"""

import contextlib
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ppl_vae import data, registry

from ppl_vae.inference import objectives
from ppl_vae.cli import main
from ppl_vae.device import DEVICES
from ppl_vae.config import PRESETS
from ppl_vae.models.mlp import ACTIVATIONS
from ppl_vae.models.vae import LIKELIHOODS

GARBAGE = st.text(max_size=10)
FEW = settings(max_examples=40, deadline=None, derandomize=True,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def mostly(values):
    """``values``, or garbage text one time in five."""
    return st.integers(0, 4).flatmap(lambda i: GARBAGE if i == 0 else values)


def one_of(names):
    return mostly(st.sampled_from(list(names)))


def number(values):
    return mostly(values.map(str))


def int_list(values):
    return mostly(st.lists(values, max_size=3).map(lambda v: ",".join(map(str, v))))


REALS = st.floats(allow_nan=True, allow_infinity=True)
SEEDS = st.one_of(st.integers(0, 2**32 - 1), st.integers(-2**70, 2**70))
TRAIN_OPTIONS = {
    "--dataset": one_of(data.DATASETS), "--binarize": one_of(data.BINARIZE), "--pad": number(st.integers(-2, 40)),
    "--model": one_of(registry.MODELS), "--guide": one_of(registry.GUIDES), "--preset": one_of(PRESETS),
    "--latent-dim": number(st.integers(-2, 8)), "--hidden": int_list(st.integers(-2, 16)),
    "--activation": one_of(ACTIVATIONS), "--likelihood": one_of(LIKELIHOODS),
    "--objective": one_of(objectives.OBJECTIVES), "--particles": number(st.integers(-2, 4)),
    "--epochs": number(st.integers(-3, 3)), "--batch-size": number(st.integers(-2, 3000)),
    "--lr": number(REALS), "--lr-milestones": int_list(st.integers(-5, 5)), "--lr-gamma": number(REALS),
    "--seed": number(SEEDS), "--checkpoint-every": number(st.integers(-2, 100)),
    "--nan-retries": number(st.integers(-2, 5)), "--nan-lr-factor": number(REALS), "--device": one_of(DEVICES),
}
FLAGS = st.lists(st.sampled_from(["--jit", "--no-drop-last"]), unique=True)


def run(argv):
    """Exit code and stderr of ``ppl-vae argv``; any exception but SystemExit propagates."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    return code, err.getvalue()


def assert_clean(code, err):
    assert code in (0, 2), err
    assert "Traceback" not in err
    if code == 2:
        assert len(err.strip().splitlines()) == 1, err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("fuzz") / "run"
    assert run(["train", "--out", str(out), "--epochs", "0", "--hidden", "8", "--no-progress"])[0] == 2
    return out


def some(options, most=4):
    """A few of ``options`` with values: with many, nearly every example would fail on garbage."""
    names = st.lists(st.sampled_from(list(options)), max_size=most, unique=True)
    return names.flatmap(lambda chosen: st.fixed_dictionaries({o: options[o] for o in chosen}))


@FEW
@given(options=some(TRAIN_OPTIONS), flags=FLAGS)
def test_random_train_options(tmp_path_factory, options, flags):
    folder = tmp_path_factory.mktemp("fuzz")
    argv = ["train", "--out", str(folder / "run"), "--data-dir", str(folder / "data"), "--no-progress", *flags,
            *[t for option, value in options.items() for t in (option, value)], "--epochs", "0"]
    assert_clean(*run(argv))


@FEW
@given(options=st.fixed_dictionaries({"--particles": number(st.integers(-2, 8))}, optional={
    "--seed": number(SEEDS), "--device": one_of(DEVICES)}))
def test_random_evaluate_options(run_dir, options):
    assert_clean(*run(["evaluate", str(run_dir), *[t for o, v in options.items() for t in (o, v)]]))
