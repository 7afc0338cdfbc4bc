"""Data-parallel training with torch.distributed (gloo, 2 processes on this machine).

The exact reference for a 2-process step is one process that takes the loss of each half of the
global batch and lets autograd add the two gradients: the all-reduce adds the same two float32
tensors (a + b = b + a exactly), so the 2-process run must end bit-identical to it. Against a plain
1-process run, which sums the whole batch inside one matrix product, only float32's reduction order
differs. The point-mass guide makes the runs free of sampling noise (each rank draws particles from
its own stream, so a stochastic guide's runs differ by their draws); its steps are eager (--no-jit),
as the reference's are.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pyro
import pytest
import torch
from pyro import poutine

from ppl_vae import parallel, registry
from ppl_vae.cli.options import config_from_args
from ppl_vae.cli import build_parser
from ppl_vae.inference.guard import GuardedSVI
from ppl_vae.inference.trainer import Trainer
from ppl_vae.io import checkpoint
from ppl_vae.io.rundir import read_jsonl
from helpers import run_cli

pytestmark = pytest.mark.slow

ARGS = ["--dataset", "digits", "--guide", "delta", "--batch-size", "20", "--hidden", "16", "--latent-dim", "2",
        "--no-jit", "--no-progress"]  # 75 steps per epoch
EPS32 = torch.finfo(torch.float32).eps


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(argv, n=2, **env):
    """``ppl-vae argv`` as ranks 0..n-1 of one job, with the variables torchrun would set."""
    base = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE=str(n),
                OMP_NUM_THREADS="1", **env)
    return [subprocess.Popen([sys.executable, "-m", "ppl_vae", *map(str, argv)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=dict(base, RANK=str(r), LOCAL_RANK=str(r)))
            for r in range(n)]


def torchrun(*args, timeout=240):
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), "torchrun"), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def params(run_dir):
    return checkpoint.load(os.path.join(run_dir, "checkpoint.pt"))["params"]


def metrics(run_dir):
    return [{k: v for k, v in m.items() if k != "seconds"} for m in read_jsonl(os.path.join(run_dir, "metrics.jsonl"))]


class TwoShards:
    """The step of two ranks, in one process, until global step ``until``; the plain step after it."""

    def __init__(self, until=None):
        self.until = until

    def build(self, trainer):
        self.trainer = trainer
        self.plain = GuardedSVI(trainer.model, trainer.guide, trainer.optim, loss=trainer.objective.loss)
        self.halves = GuardedSVI(trainer.model, trainer.guide, trainer.optim, loss=Halves(trainer))

    def __call__(self, x, idx, **inputs):
        sharded = self.until is None or self.trainer.step < self.until
        return (self.halves if sharded else self.plain).step(x, idx, **inputs)


class Halves:
    """The loss and gradients of a batch as Σ_r w_r (loss, gradients) of its two halves (parallel.World.rows), in
    the all-reduce's float32 operations: w_r = 1, or |B_r| / B when the model's data plate is subsampled."""

    def __init__(self, trainer):
        self.trainer = trainer

    def loss_and_grads(self, model, guide, x, idx, **inputs):
        n, h = idx.shape[0], -(-idx.shape[0] // 2)
        total, grads = 0.0, {}
        for rows in (slice(0, h), slice(h, n)):
            w = (rows.stop - rows.start) / n if self.trainer.full_size else 1.0
            shard = {name: value[rows] for name, value in inputs.items()}
            with poutine.trace(param_only=True) as seen:
                total = total + w * self.trainer.objective.loss.loss_and_grads(model, guide, x[rows], idx[rows],
                                                                               **shard)
            for site in seen.trace.nodes.values():
                p = site["value"].unconstrained()
                if p.grad is not None:
                    grads[p] = grads.get(p, 0) + p.grad * w
                    p.grad = None
        for p, g in grads.items():
            p.grad = g
        return total


def reference(tmp_path, epochs, until=None, args=ARGS):
    """The one-process run of ARGS whose first ``until`` steps are TwoShards' (all of them by default), on one
    thread as torchrun's ranks run (OMP_NUM_THREADS=1): other counts block some sums otherwise."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return one_process(tmp_path, epochs, until, args)
    finally:
        torch.set_num_threads(threads)


def one_process(tmp_path, epochs, until, args):
    config = config_from_args(build_parser().parse_args(["train", *args, "--epochs", str(epochs), "--out", "x"]))
    config = registry.resolve(config)
    data = registry.load_data(config, torch.device("cpu"))
    pyro.set_rng_seed(config.training.seed)
    model, guide = registry.build(config, data)
    out = str(tmp_path / "reference")
    os.makedirs(tmp_path, exist_ok=True)
    trainer = Trainer(model, guide, data, registry.build_objective(config), config.training, device="cpu",
                      out=out, config=config, progress=False, step=TwoShards(until))
    trainer.start_run_dir()
    trainer.run()
    return out


def test_two_processes_are_bit_identical_to_one_adding_the_two_shards_gradients_and_close_to_a_plain_run(tmp_path,
                                                                                                         capsys):
    run = tmp_path / "two"
    done = torchrun("--nproc-per-node", "2", "-m", "ppl_vae", "train", *ARGS, "--epochs", "4", "--out", run)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "epoch 4:" in done.stdout and done.stdout.count("epoch 4:") == 1  # one rank prints
    two, ref = params(run), params(reference(tmp_path, 4))
    assert two.keys() == ref.keys() and all(torch.equal(two[k], ref[k]) for k in two)  # 300 steps, bit for bit
    a, b = metrics(run), metrics(tmp_path / "reference")
    assert len(a) == len(b) == 4 and [m["step"] for m in a] == [75, 150, 225, 300]
    for m, r in zip(a, b):  # the losses travel as float32 in the all-reduce
        for key in ("train_bound", "test_bound"):
            assert m[key] == pytest.approx(r[key], rel=8 * EPS32)

    # a plain 1-process run sums the whole batch inside one matrix product, in another order
    assert run_cli(["train", *ARGS, "--epochs", "1", "--out", tmp_path / "plain"], capsys)[0] == 0
    plain, two = params(tmp_path / "plain"), params(reference(tmp_path / "r1", 1))  # = 2 processes, as shown
    for k in plain:  # each of the 75 Adam steps moves θ by float32 rounding of its scale, at most
        assert (plain[k] - two[k]).abs().max() <= 75 * EPS32 * plain[k].abs().max(), k
    assert metrics(tmp_path / "plain")[0]["test_bound"] == pytest.approx(
        metrics(tmp_path / "r1" / "reference")[0]["test_bound"], rel=1e-5)


def test_sigterm_stops_both_ranks_after_one_step_and_the_run_resumes_on_one_process_exactly(tmp_path):
    run = tmp_path / "run"
    ranks = launch(["train", *ARGS, "--epochs", "6", "--checkpoint-every", "7", "--out", run])
    while not (run / "metrics.jsonl").exists() and ranks[1].poll() is None:
        time.sleep(0.01)
    ranks[1].send_signal(signal.SIGTERM)  # one rank only: both must stop after the same step
    outs = [r.communicate(timeout=120) for r in ranks]
    assert [r.returncode for r in ranks] == [143, 143], outs
    assert "checkpoint saved" in outs[0][1] and outs[1][1] == ""  # rank 0 says it, once
    stopped = checkpoint.load(run / "checkpoint.pt")
    assert 75 <= stopped["step"] < 450 and len(stopped["ranks_rng"]) == 1

    resumed = subprocess.run([sys.executable, "-m", "ppl_vae", "train", "--resume", run, "--no-progress"],
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    ref = reference(tmp_path, 6, until=stopped["step"])
    a, b = params(run), params(ref)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [m["step"] for m in metrics(run)] == [75 * e for e in range(1, 7)]


USER_PAIR = """
import math

import pyro
import pyro.distributions as dist
import torch
from torch import nn

FAULTED = []  # this process's: the first training batch holding point 7 gets a NaN, once


def make_pair(data):
    n = data.x_train.shape[0]
    decoder, encoder = nn.Linear(2, data.x_dim), nn.Linear(data.x_dim, 2)

    def model(x, idx=None):
        pyro.module("dec", decoder)
        with pyro.plate("data", n if idx is not None else x.shape[0], subsample=idx):
            z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            logits = decoder(z)
            if idx is not None and torch.is_grad_enabled() and 7 in idx.tolist() and not FAULTED:
                FAULTED.append(True)
                logits = logits * math.nan
            pyro.sample("obs", dist.Bernoulli(logits=logits).to_event(1), obs=x)

    def guide(x, idx=None):
        pyro.module("enc", encoder)
        with pyro.plate("data", n if idx is not None else x.shape[0], subsample=idx):
            pyro.sample("z", dist.Delta(encoder(x)).to_event(1))

    return model, guide
"""


def test_one_ranks_non_finite_gradient_rolls_every_rank_back_on_a_users_subsampled_pair(tmp_path):
    (tmp_path / "nan_pair.py").write_text(USER_PAIR)
    args = ["--pair", f"{tmp_path / 'nan_pair.py'}:make_pair", "--dataset", "digits", "--batch-size", "20",
            "--checkpoint-every", "10", "--no-jit", "--no-progress"]
    run = tmp_path / "two"
    done = torchrun("--nproc-per-node", "2", "-m", "ppl_vae", "train", *args, "--epochs", "1", "--out", run)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count("the loss was not finite; back to step") == 1  # rank 0 says it, whichever rank faulted
    two, ref = params(run), params(reference(tmp_path, 1, args=args))
    assert all(torch.equal(two[k], ref[k]) for k in two)  # the same rollback on both ranks, w_r = 1/2 each


LABELLED_PAIR = """
import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn


def make_pair(data):
    n = data.x_train.shape[0]
    decoder, encoder = nn.Linear(2 + 10, data.x_dim), nn.Linear(data.x_dim + 10, 2)

    def model(x, y, idx=None):
        pyro.module("labelled_dec", decoder)
        shift = pyro.sample("shift", dist.Normal(0.0, 1.0))  # a global latent, outside the data plate
        with pyro.plate("data", n if idx is not None else x.shape[0], subsample=idx):
            z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            label = F.one_hot(y, 10).to(x).expand(*z.shape[:-1], 10)
            pyro.sample("pixels", dist.Bernoulli(logits=decoder(torch.cat([z, label], -1)) + shift).to_event(1),
                        obs=x)

    def guide(x, y, idx=None):
        pyro.module("labelled_enc", encoder)
        pyro.sample("shift", dist.Delta(pyro.param("labelled_shift", torch.tensor(0.0))))
        with pyro.plate("data", n if idx is not None else x.shape[0], subsample=idx):
            pyro.sample("z", dist.Delta(encoder(torch.cat([x, F.one_hot(y, 10).to(x)], -1))).to_event(1))

    return model, guide
"""

ENUMERATED_PAIR = """
import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import constraints


def make_pair(data):
    decoder, encoder = nn.Linear(2, data.x_dim), nn.Linear(data.x_dim, 2)

    def model(x):
        pyro.module("mixture_dec", decoder)
        weights = pyro.param("mixture_weights", torch.ones(3) / 3, constraint=constraints.simplex)
        centres = pyro.param("mixture_centres", torch.arange(6.0).reshape(3, 2) - 2.5)
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Categorical(weights), infer={"enumerate": "parallel"})
            z = pyro.sample("z", dist.Normal(centres[c], 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=decoder(z)).to_event(1), obs=x)

    def guide(x):
        pyro.module("mixture_enc", encoder)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Delta(encoder(x)).to_event(1))

    return model, guide
"""


@pytest.mark.parametrize("pair, objective", [(LABELLED_PAIR, "elbo"), (ENUMERATED_PAIR, "enum")],
                         ids=["labels-global-subsampled", "enumerated"])
def test_a_users_pair_trains_on_two_processes_as_one_adding_the_two_shards(tmp_path, capsys, pair, objective):
    """Named inputs (the labels) are sharded with the points; a global latent's prior term counts once
    (w_r = |B_r| / B under the subsampled plate); an enumerated site is summed out on each shard. (Their own
    parameter and site names; the data plate is 'data', as every pair's must be.)"""
    (tmp_path / "user_pair.py").write_text(pair)
    args = ["--pair", f"{tmp_path / 'user_pair.py'}:make_pair", "--objective", objective, "--dataset", "digits",
            "--batch-size", "30", "--no-jit", "--no-progress"]
    run = tmp_path / "two"
    done = torchrun("--nproc-per-node", "2", "-m", "ppl_vae", "train", *args, "--epochs", "2", "--out", run)
    assert done.returncode == 0, done.stderr[-2000:]
    two, ref = params(run), params(reference(tmp_path, 2, args=args))
    assert two.keys() == ref.keys() and all(torch.equal(two[k], ref[k]) for k in two)
    for m, r in zip(metrics(run), metrics(tmp_path / "reference"), strict=True):  # float32 losses in the all-reduce
        assert m["step"] == r["step"] and m["train_bound"] == pytest.approx(r["train_bound"], rel=8 * EPS32)
    # the two-shard sum is the whole batch's loss (Σ_r |B_r|/B · N/|B_r| = N/B): a plain run differs by float32 order
    assert run_cli(["train", *args, "--epochs", "1", "--out", tmp_path / "plain"], capsys)[0] == 0
    plain, one = params(tmp_path / "plain"), params(reference(tmp_path / "r1", 1, args=args))
    steps = checkpoint.load(tmp_path / "plain" / "checkpoint.pt")["step"]
    for k in plain:  # each Adam step moves θ by float32 rounding of its scale, at most
        assert (plain[k] - one[k]).abs().max() <= steps * EPS32 * plain[k].abs().max(), k


def test_a_killed_rank_makes_the_other_exit_with_one_sentence_and_a_hung_one_within_the_timeout(tmp_path):
    # rank 0 also hosts the job's store: its death must not abort the survivor either
    for how, victim, limit in ((signal.SIGKILL, 1, 30), (signal.SIGKILL, 0, 30), (signal.SIGSTOP, 1, 5)):
        run = tmp_path / f"{how.name}{victim}"
        ranks = launch(["train", *ARGS, "--epochs", "200", "--out", run], PPL_VAE_DIST_TIMEOUT=str(limit))
        while not (run / "metrics.jsonl").exists():
            time.sleep(0.01)
        ranks[victim].send_signal(how)
        survivor = ranks[1 - victim]
        start = time.monotonic()
        _, err = survivor.communicate(timeout=limit + 60)
        waited = time.monotonic() - start
        ranks[victim].kill()
        ranks[victim].communicate()
        assert survivor.returncode == parallel.PeerLost.exit_code and waited < limit + 10, (how, victim, waited, err)
        line = err.strip().splitlines()[-1]
        assert f"rank {1 - victim} lost contact with another process" in line and "--resume" in line
        assert "Traceback" not in err and "terminate called" not in err
        assert checkpoint.load(run / "checkpoint.pt")["step"] % 75 == 0  # the last checkpoint stands, whole


def test_two_simulated_nodes_train_and_checkpoint(tmp_path):
    run, port = tmp_path / "run", free_port()
    nodes = [subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "torchrun"), "--nnodes", "2",
                               "--nproc-per-node", "1", "--node-rank", str(r), "--rdzv-backend", "c10d",
                               "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "test", "-m", "ppl_vae", "train",
                               *ARGS, "--epochs", "2", "--out", str(run)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    outs = [n.communicate(timeout=240) for n in nodes]
    assert [n.returncode for n in nodes] == [0, 0], outs
    assert checkpoint.load(run / "checkpoint.pt")["step"] == 150 and len(metrics(run)) == 2
    assert "epoch 2:" in outs[0][0] + outs[1][0]


@pytest.fixture
def rank_0_of_2(monkeypatch):
    """This process as rank 0 of a 2-process job, for refusals made before any collective."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(parallel, "world", lambda: parallel.World(0, 2))


@pytest.mark.parametrize("argv, words", [
    (["--objective", "mmd"], "cannot train on 2 processes: the mmd objective's MMD² compares the whole mini-batch"),
    (["--objective", "score-avg"], "score-avg keeps a decaying-average baseline, a running state per mini-batch position, which each process"),
    (["--guide", "local"], "keeps a table of variational parameters per data point"),
    (["--model", "sbn", "--objective", "relax"], "the relax objective's control variate level, a running mean of each "
                                                 "mini-batch's f, a statistic of the batch that the shards' terms do not"),
    (["--batch-size", "1"], "--batch-size 1 is smaller than the 2 processes"),
])
def test_a_run_the_shards_cannot_add_up_is_refused_before_any_work(rank_0_of_2, tmp_path, capsys, argv, words):
    code, _, err = run_cli(["train", "--dataset", "digits", "--epochs", "1", "--out", tmp_path / "r", *argv], capsys)
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r").exists()


def test_evaluate_shards_the_test_points_and_gathers_every_one(tmp_path, capsys):
    run = tmp_path / "run"  # the point-mass guide's per-point number is deterministic: the gathered mean is exact
    assert run_cli(["train", *ARGS, "--epochs", "1", "--out", run], capsys)[0] == 0
    ranks = launch(["evaluate", run, "--particles", "3"])
    outs = [r.communicate(timeout=120) for r in ranks]
    assert [r.returncode for r in ranks] == [0, 0], outs
    assert "297 test points" in outs[0][0] and outs[1][0] == ""
    two = json.loads((run / "eval.json").read_text())
    assert run_cli(["evaluate", run, "--particles", "3"], capsys)[0] == 0
    one = json.loads((run / "eval.json").read_text())
    assert two["n"] == one["n"] == 297
    assert two["test_objective"] == pytest.approx(one["test_objective"], rel=8 * EPS32)
    assert two["test_objective_se"] == pytest.approx(one["test_objective_se"], rel=1e-4)


def test_evaluate_refuses_the_estimators_that_run_in_one_process(rank_0_of_2, tmp_path, capsys):
    code, _, err = run_cli(["evaluate", tmp_path, "--estimator", "is"], capsys)
    assert code == 2 and "--estimator and --bdmc run in one process" in err


def test_commands_that_run_in_one_process_are_refused_under_torchrun(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    code, _, err = run_cli(["plot", "nowhere"], capsys)
    assert code == 2 and "runs in one process; run it without torchrun" in err


def test_each_rank_takes_its_contiguous_share():
    shares = [parallel.World(r, 3).rows(10) for r in range(3)]
    assert [(s.start, s.stop) for s in shares] == [(0, 4), (4, 7), (7, 10)]
    idx = torch.arange(7)
    assert torch.cat([parallel.World(r, 2).shard(idx) for r in range(2)]).tolist() == list(range(7))


def test_compare_trains_each_objective_data_parallel_and_rank_0_writes_the_table(tmp_path):
    out = tmp_path / "cmp"
    ranks = launch(["compare", "--dataset", "digits", "--objectives", "elbo,iwae", "--epochs", "1", "--particles", "5",
                    "--eval-particles", "20", "--snr-samples", "4", "--out", out, "--no-progress"])
    outs = [r.communicate(timeout=240) for r in ranks]
    assert [r.returncode for r in ranks] == [0, 0], outs
    assert "| iwae |" in outs[0][0] and outs[1][0] == ""
    rows = (out / "comparison.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[1].startswith("elbo,1,5,") and rows[2].startswith("iwae,1,5,")
    assert [m["step"] for m in metrics(out / "iwae")] == [15]


def test_compare_refuses_jobs_under_torchrun(rank_0_of_2, tmp_path, capsys):
    code, _, err = run_cli(["compare", "--dataset", "digits", "--objectives", "elbo,iwae", "--jobs", "2",
                            "--out", tmp_path / "c"], capsys)
    assert code == 2 and "drop --jobs" in err
