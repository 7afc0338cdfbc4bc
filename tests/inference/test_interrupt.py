"""Nothing lost: a run killed or interrupted anywhere resumes to exactly the uninterrupted run.

On the CPU with a fixed seed "exactly" means bit-identical parameters and identical metrics
(all but the wall-clock ``seconds``).
"""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from helpers import run_cli
from ppl_vae import fit
from ppl_vae.io import checkpoint
from ppl_vae.io.rundir import read_jsonl
from ppl_vae.inference.trainer import Trainer
from helpers import pair

ARGS = ["--epochs", "2", "--batch-size", "20", "--hidden", "16", "--latent-dim", "2", "--checkpoint-every", "7",
        "--no-progress"]  # 75 steps per epoch: step 80 is the 5th of epoch 2, the last checkpoint before it step 77


def assert_same_run(a, b):
    """Run directories ``a`` and ``b`` end with the same parameters and metrics."""
    pa, pb = (checkpoint.load(d / "checkpoint.pt")["params"] for d in (a, b))
    assert pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(read_jsonl(a / "metrics.jsonl")) == strip(read_jsonl(b / "metrics.jsonl"))


class Killed(BaseException):
    """Stands for SIGKILL: the step in progress never finishes and nothing more is written."""


def during_step(monkeypatch, step, action):
    """Run ``action()`` at the start of global step ``step`` (1-based), inside train_step."""
    original = Trainer.train_step

    def train_step(self, x, idx):
        if self.step + 1 == step:
            action()
        return original(self, x, idx)

    monkeypatch.setattr(Trainer, "train_step", train_step)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The run that nothing interrupted."""
    from ppl_vae.cli import main

    out = tmp_path_factory.mktemp("reference") / "run"
    assert main(["train", "--out", str(out), *ARGS]) == 0
    return out


def resume_and_compare(out, reference, capsys):
    code, _, err = run_cli(["train", "--resume", out, "--no-progress"], capsys)
    assert code == 0, err
    assert_same_run(out, reference)


def test_killed_mid_epoch_resumes_bit_identically(reference, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"

    def kill():
        raise Killed

    during_step(monkeypatch, 80, kill)
    with pytest.raises(Killed):
        run_cli(["train", "--out", out, *ARGS], capsys)
    monkeypatch.undo()
    state = checkpoint.load(out / "checkpoint.pt")
    assert (state["epoch"], state["step"], state["in_epoch"]["steps"]) == (1, 77, 2)
    assert [r["epoch"] for r in read_jsonl(out / "metrics.jsonl")] == [1]
    (out / ".checkpoint-k1ll3d.tmp").write_bytes(b"half a checkpoint")  # as SIGKILL mid-save leaves it
    resume_and_compare(out, reference, capsys)
    assert not list(out.glob("*.tmp"))


@pytest.mark.parametrize("signals, code, saved_step", [
    ((signal.SIGINT,), 130, 80),  # the step in progress finishes, then the checkpoint is written
    ((signal.SIGTERM,), 143, 80),
    ((signal.SIGTERM, signal.SIGTERM), 143, 77),  # a second signal abandons the step: the last checkpoint stays
], ids=["SIGINT", "SIGTERM", "SIGTERM twice"])
def test_a_signal_mid_step(reference, tmp_path, capsys, monkeypatch, signals, code, saved_step):
    out, handler = tmp_path / "run", signal.getsignal(signal.SIGINT)
    during_step(monkeypatch, 80, lambda: [os.kill(os.getpid(), s) for s in signals])
    assert run_cli(["train", "--out", out, *ARGS], capsys)[0] == code
    monkeypatch.undo()
    assert checkpoint.load(out / "checkpoint.pt")["step"] == saved_step
    assert signal.getsignal(signal.SIGINT) == handler  # put back after training
    resume_and_compare(out, reference, capsys)


# -- the real thing: a `ppl-vae train` process, signalled from outside -------------------------


def freeze_mid_epoch(child, path) -> dict:
    """Wait until the child's checkpoint lies inside an epoch; return it with the child stopped."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert child.poll() is None, child.communicate()[1]
        if path.exists():
            os.kill(child.pid, signal.SIGSTOP)
            state = checkpoint.load(path)  # never torn: checkpoints are replaced atomically
            if state["in_epoch"]["steps"] > 0:
                return state
            os.kill(child.pid, signal.SIGCONT)
        time.sleep(0.02)
    raise AssertionError("training never wrote a mid-epoch checkpoint")


@pytest.mark.parametrize("sig, code", [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGINT, 130)],
                         ids=["SIGKILL", "SIGINT"])
@pytest.mark.slow
def test_a_process_signalled_mid_epoch_resumes_bit_identically(reference, tmp_path, capsys, sig, code):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}  # the reference's threads
    child = subprocess.Popen([sys.executable, "-m", "ppl_vae", "train", "--out", str(out), *ARGS],
                             stderr=subprocess.PIPE, text=True, env=env)
    frozen = freeze_mid_epoch(child, out / "checkpoint.pt")
    child.send_signal(sig)
    os.kill(child.pid, signal.SIGCONT)
    _, err = child.communicate(timeout=120)
    assert child.returncode == code, err
    state = checkpoint.load(out / "checkpoint.pt")
    if sig == signal.SIGKILL:
        assert state["step"] == frozen["step"]  # exactly the work since the last checkpoint is lost
    else:
        assert state["step"] >= frozen["step"]
        last = err.strip().splitlines()[-1]
        assert f"stopped by {sig.name} after step {state['step']}" in last and "--resume" in last, err
    resume_and_compare(out, reference, capsys)


def test_resume_across_an_lr_milestone_is_bit_identical(digits, tmp_path):
    """The optimizer's saved state must not bring back the learning rate it was saved with."""
    schedule = dict(lr_milestones=[2], lr_gamma=0.1, progress=False)
    straight = fit(*pair(digits), digits, epochs=3, out=str(tmp_path / "a"), **schedule)
    fit(*pair(digits), digits, epochs=2, out=str(tmp_path / "b"), **schedule)
    resumed = fit(*pair(digits), digits, epochs=3, out=str(tmp_path / "b"), resume=True, **schedule)
    assert [r["train_bound"] for r in resumed] == [r["train_bound"] for r in straight]
    assert_same_run(tmp_path / "a", tmp_path / "b")
