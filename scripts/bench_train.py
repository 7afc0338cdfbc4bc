"""Milliseconds per training step: the Pyro VAE under SVI against a hand-written PyTorch VAE.

All four variants train the same networks (the model's decoder and the guide's encoder,
built by the same classes from the same initial weights) on the same mini-batches with Adam
at the same learning rate, and estimate the same single-sample reparameterized ELBO:

- ``pyro``: ``SVI(vae.model, encoder.guide, pyro.optim.Adam, Trace_ELBO())``;
- ``pyro-jit``: the same with Pyro's ``JitTrace_ELBO`` (TorchScript; for comparison only, ``fit`` no
  longer uses it);
- ``fit``: the step ``ppl_vae.fit`` takes by default — ``GuardedSVI`` (the loss and every gradient
  checked for NaN/inf before the optimizer moves, one read-back) replaying the step ``Trace_ELBO``
  recorded once as a graph of torch ops (``ppl_vae.inference.record``; the recording's time is printed)
  and the run's one torch Adam over all parameters (``ppl_vae.inference.optim.Optimizer``), without
  Pyro's per-distribution checks (they run once over the data before training);
- ``fit-eager``: the same with ``Trace_ELBO`` run eagerly (``--no-jit``);
- ``torch``: the ELBO written by hand, −Σ_n [log p(x_n|z_n) + log p(z_n) − log q(z_n|x_n)],
  with one ``torch.optim.Adam`` over all parameters.

With ``--conditional``, the pair is the conditional VAE of ``scripts/examples/cvae.py`` (the digits'
labels y reach model and guide as a named input, an input of the recorded graph), against the same
networks written by hand; ``pyro`` and ``pyro-jit`` are left out. With ``--device cuda``, two more
variants: ``torch-graph`` and ``fit-graph``, the hand-written step and ``fit``'s replay, each with a
capturable torch Adam, captured once as a CUDA graph and replayed (no guard check in either: it reads
the loss back, which a captured graph cannot).

Rounds are interleaved (each round times every variant for ``--steps`` steps, in rotating
order), so drift in the machine's speed hits all variants alike; the medians over rounds
and their ratio to ``torch`` are printed, and written as JSON with ``--json``.

    python scripts/bench_train.py --dataset mnist --data-dir ../shared/data --preset iwae

With ``--nproc N`` it measures data-parallel scaling instead: training samples per second of
``torchrun --nproc-per-node n -m ppl_vae train`` for n = 1 and N (the median over epochs 2..E of
each epoch's step time, from metrics.jsonl), beside a hand-written PyTorch VAE with the same
networks under ``DistributedDataParallel``, launched the same way on the same global batches;
scaling efficiency = samples/s at N / (N × samples/s at 1).

    python scripts/bench_train.py --nproc 2 --epochs 6
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import time
import warnings
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.infer import SVI, JitTrace_ELBO, Trace_ELBO

from ppl_vae import data as datasets
from ppl_vae import registry
from ppl_vae.config import PRESETS, Config
from ppl_vae.device import resolve_device
from ppl_vae.inference.guard import GuardedSVI
from ppl_vae.inference.optim import Optimizer
from ppl_vae.inference.record import record
from ppl_vae.memory import keep_freed_memory


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="digits", choices=datasets.DATASETS)
    p.add_argument("--data-dir", default="data")
    p.add_argument("--preset", default=None, choices=list(PRESETS))
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--steps", type=int, default=20, help="steps per variant per round")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--warmup", type=int, default=20, help="untimed steps per variant first (JIT tracing)")
    p.add_argument("--device", default="auto")
    p.add_argument("--conditional", action="store_true", help="the conditional VAE with labels as a named input")
    p.add_argument("--json", default=None, help="also write the results to this file")
    p.add_argument("--nproc", type=int, default=None, help="measure data-parallel scaling on 1 and N processes")
    p.add_argument("--epochs", type=int, default=6, help="epochs of each --nproc run (the first is not timed)")
    p.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)  # a rank of the DDP reference
    return p.parse_args()


def torch_step_fn(model, guide, lr, capturable: bool = False):
    """A hand-written VAE training step with the same networks and estimator as Trace_ELBO."""
    params = [*model.parameters(), *guide.parameters()]
    opt = torch.optim.Adam(params, lr=lr, capturable=capturable)

    def step(x):
        loc, scale = guide(x)
        z = loc + scale * torch.randn_like(loc)
        log_lik = -F.binary_cross_entropy_with_logits(model.decoder(z), x, reduction="none").sum(-1)
        log_prior = dist.Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_q = dist.Normal(loc, scale).log_prob(z).sum(-1)
        loss = -(log_lik + log_prior - log_q).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def torch_cvae_step_fn(model, guide, lr, capturable: bool = False):
    """The conditional VAE's step written by hand: the networks of ``scripts/examples/cvae.py``, its ELBO."""
    opt = torch.optim.Adam([*model.parameters(), *guide.parameters()], lr=lr, capturable=capturable)

    def step(x, y):
        label = F.one_hot(y, 10).to(x)
        loc, log_scale = guide.net(torch.cat([x, label], -1)).chunk(2, -1)
        scale = log_scale.exp()
        z = loc + scale * torch.randn_like(loc)
        logits = model.net(torch.cat([z, label], -1))
        log_lik = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        log_q = dist.Normal(loc, scale).log_prob(z).sum(-1)
        loss = -(log_lik + dist.Normal(0.0, 1.0).log_prob(z).sum(-1) - log_q).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


VARIANTS = ("torch", "pyro", "pyro-jit", "fit", "fit-eager")
RECORDED: dict[str, float] = {}  # variant: the seconds its recording took


def pyro_step_fn(model, guide, lr, variant):
    """``SVI.step`` with Pyro's Adam; ``fit``: the step ``ppl_vae.fit`` takes, whose
    ``GuardedSVI`` checks the loss and gradients before the optimizer moves, with Pyro's checks off."""
    loss = JitTrace_ELBO(ignore_jit_warnings=True) if variant == "pyro-jit" else Trace_ELBO()
    if variant.startswith("fit"):
        return guarded_step(model, guide, Trace_ELBO(), lr, recorded=variant if variant == "fit" else None)
    return SVI(model.model, guide.guide, pyro.optim.Adam({"lr": lr}), loss=loss).step


def guarded_step(model, guide, loss, lr, recorded: str | None = None):
    """The trainer's step: ``GuardedSVI`` with the run's one Adam, Pyro's distribution checks off;
    ``recorded``: the variant's name, whose first step records ``loss`` as ``fit`` does before training
    (the seconds it took go to :data:`RECORDED`), and whose later steps replay it."""
    svi = GuardedSVI(model.model, guide.guide, Optimizer(lr, lambda name: 1.0), loss=loss)

    def step(x, **inputs):
        with pyro.validation_enabled(False):
            if recorded is not None and recorded not in RECORDED:
                start = time.perf_counter()
                svi.loss = record(loss, model.model, guide.guide, (x,), inputs)
                RECORDED[recorded] = time.perf_counter() - start
            return svi.step(x, **inputs)
    return step


def graphed(step, x, inputs: dict):
    """``step`` (a function of a mini-batch that neither syncs nor allocates its optimizer state anew)
    captured once as a CUDA graph on ``x`` and ``inputs``; the function returned copies a mini-batch into
    the captured one's memory and replays the graph (PyTorch's recipe for whole-network capture)."""
    static_x, static = x.clone(), {k: v.clone() for k, v in inputs.items()}
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # warm-up outside the capture: the optimizer's state exists before it
            step(static_x, **static)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step(static_x, **static)

    def replay(x, **inputs):
        static_x.copy_(x)
        for k, v in inputs.items():
            static[k].copy_(v)
        graph.replay()
    return replay


def replay_step_fn(model, guide, loss, lr, x, inputs: dict):
    """``fit``'s recorded step without the guard, for a CUDA graph: the replay's gradients, then a
    capturable torch Adam over the parameters it reads."""
    with pyro.validation_enabled(False):
        recorded = record(loss, model.model, guide.guide, (x,), inputs)
    params = recorded.params()
    opt = torch.optim.Adam(params, lr=lr, capturable=True)

    def step(x, **inputs):
        for p in params:
            p.grad = None
        recorded.backward(model.model, guide.guide, x, **inputs)
        opt.step()
    return step


def networks(config, data, conditional: bool):
    """(model, guide): the registry's VAE for ``config``, or with ``conditional`` the pair of
    ``scripts/examples/cvae.py`` (Decoder, Encoder) built as its ``make_pair`` builds it."""
    if not conditional:
        return registry.build(config, data)
    spec = importlib.util.spec_from_file_location("cvae_example", Path(__file__).parent / "examples" / "cvae.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    model, guide = example.make_pair(data)
    return model.to(data.x_train.device), guide.to(data.x_train.device)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "cpu"


def setup(args):
    """(device, static-binarized data, network config, mini-batch indices) for a benchmark's ``args``.
    glibc is set as ``fit`` and the CLI set it (:mod:`ppl_vae.memory`), for every variant alike."""
    keep_freed_memory()
    device = resolve_device(args.device)
    data = datasets.load(args.dataset, data_dir=args.data_dir, binarize="static", device=device)
    config = registry.resolve(Config.from_dict({"binarize": "static", **({"preset": args.preset} if args.preset else {})}))
    g = torch.Generator(device=device).manual_seed(0)
    return device, data, config, datasets.batches(data.x_train.shape[0], args.batch_size, g, device=device)


def time_interleaved(variants: dict, x, batches, args, device, inputs: dict | None = None) -> dict[str, list[float]]:
    """ms per step of each variant (a function of a mini-batch and its named ``inputs``), one entry per round.

    ``args.warmup`` untimed steps first, then ``args.rounds`` rounds of ``args.steps`` steps per
    variant in rotating order. Each Pyro variant keeps its own param store, swapped in around its steps.
    """
    stores = {name: None for name in variants}
    inputs = inputs or {}

    def run(name, n, offset):
        store = pyro.get_param_store()
        if stores[name] is not None:
            store.set_state(stores[name])
        else:
            pyro.clear_param_store()
        for i in range(n):
            idx = batches[(offset + i) % len(batches)]
            variants[name](x[idx], **{k: v[idx] for k, v in inputs.items()})
        if device.type == "cuda":
            torch.cuda.synchronize()
        stores[name] = store.get_state()

    for name in variants:
        run(name, args.warmup, 0)
    times = {name: [] for name in variants}
    names = list(variants)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            run(name, args.steps, r * args.steps)
            times[name].append(1e3 * (time.perf_counter() - start) / args.steps)
    return times


def paired_ratio(times: dict[str, list[float]], name: str, reference: str) -> float:
    """The median over rounds of ``name``'s time over ``reference``'s in the same round: drift in the
    machine's speed between rounds (this one's drifts by ±15 % within minutes) cancels in each ratio."""
    return statistics.median(a / b for a, b in zip(times[name], times[reference]))


class TorchELBO(torch.nn.Module):
    """The hand-written ELBO of :func:`torch_step_fn` as a module's forward, as DDP needs it: −Σ_n ELBO_n."""

    def __init__(self, model, guide):
        super().__init__()
        self.model, self.guide = model, guide

    def forward(self, x):
        loc, scale = self.guide(x)
        z = loc + scale * torch.randn_like(loc)
        log_lik = -F.binary_cross_entropy_with_logits(self.model.decoder(z), x, reduction="none").sum(-1)
        log_q = dist.Normal(loc, scale).log_prob(z).sum(-1)
        return -(log_lik + dist.Normal(0.0, 1.0).log_prob(z).sum(-1) - log_q).sum()


def ddp_worker(args) -> None:
    """One rank of the reference: DDP over the hand-written ELBO, each rank its shard of every global batch.
    DDP averages gradients, so each rank's loss is × world size: the step is that of the whole batch's sum."""
    import torch.distributed as dist_
    from torch.nn.parallel import DistributedDataParallel

    from ppl_vae.parallel import World

    dist_.init_process_group("nccl" if torch.cuda.is_available() and args.device != "cpu" else "gloo")
    world = World(dist_.get_rank(), dist_.get_world_size())
    device, data, config, _ = setup(args)
    torch.manual_seed(0)
    model, guide = registry.build(config, data)
    elbo = DistributedDataParallel(TorchELBO(model, guide).to(device))
    opt = torch.optim.Adam(elbo.parameters(), lr=1e-3)
    x, seconds = data.x_train, []
    for epoch in range(args.epochs):
        g = torch.Generator(device=device).manual_seed(epoch)
        chunks = datasets.batches(x.shape[0], args.batch_size, g, device=device)
        start = time.perf_counter()
        for idx in chunks:
            loss = elbo(x[world.shard(idx)]) * world.size
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    if world.main:
        print(json.dumps({"samples_per_s": len(chunks) * args.batch_size / statistics.median(seconds[1:])}))
    dist_.destroy_process_group()


def scaling(args) -> None:
    """samples/s of ppl-vae train and of the DDP reference on 1 and --nproc processes, and their efficiencies."""
    import os
    import subprocess
    import sys
    import tempfile

    from ppl_vae.io.rundir import read_jsonl

    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    common = ["--dataset", args.dataset, "--data-dir", args.data_dir, "--batch-size", str(args.batch_size),
              "--device", args.device, *(["--preset", args.preset] if args.preset else [])]
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sorted({1, args.nproc}):
            run = os.path.join(tmp, f"run{n}")
            launch = [torchrun, "--nproc-per-node", str(n)]
            subprocess.run([*launch, "-m", "ppl_vae", "train", *common, "--binarize", "static", "--objective", "elbo",
                            "--particles", "1", "--epochs", str(args.epochs), "--out", run, "--no-progress"], check=True, capture_output=True)
            epochs = read_jsonl(os.path.join(run, "metrics.jsonl"))
            steps = epochs[0]["step"]
            ours = steps * args.batch_size / statistics.median(m["seconds"] for m in epochs[1:])
            done = subprocess.run([*launch, __file__, "--ddp-worker", *common, "--epochs", str(args.epochs)],
                                  check=True, capture_output=True, text=True)
            reference = json.loads(done.stdout.strip().splitlines()[-1])["samples_per_s"]
            rates[n] = {"ppl_vae": ours, "torch_ddp": reference}
    print(f"{args.dataset}, batch {args.batch_size} (global), {args.epochs} epochs per run, epochs 2.. timed; "
          f"{cpu_name()}, {os.cpu_count()} cores; torch {torch.__version__}, pyro {pyro.__version__}")
    print(f"{'procs':>5}{'ppl-vae samples/s':>19}{'efficiency':>12}{'torch DDP samples/s':>21}{'efficiency':>12}"
          f"{'× torch':>9}")
    for n, r in rates.items():
        eff = {k: v / (n * rates[1][k]) for k, v in r.items()}
        print(f"{n:>5}{r['ppl_vae']:>19.0f}{eff['ppl_vae']:>12.2f}{r['torch_ddp']:>21.0f}{eff['torch_ddp']:>12.2f}"
              f"{r['torch_ddp'] / r['ppl_vae']:>9.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"dataset": args.dataset, "batch_size": args.batch_size, "epochs": args.epochs,
                       "cpu": cpu_name(), "cores": os.cpu_count(), "samples_per_s": rates}, f, indent=2)


def main():
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")
    args = parse_args()
    if args.ddp_worker:
        return ddp_worker(args)
    if args.nproc:
        return scaling(args)
    device, data, config, batches = setup(args)
    x = data.x_train

    inputs = {"y": data.y_train} if args.conditional else {}
    first = batches[0]
    example = (x[first], {k: v[first] for k, v in inputs.items()})
    names = [n for n in VARIANTS if not (args.conditional and n.startswith("pyro"))]
    if device.type == "cuda":
        names += ["torch-graph", "fit-graph"]
    variants = {}
    for name in names:
        pyro.clear_param_store()
        torch.manual_seed(0)
        model, guide = networks(config, data, args.conditional)
        if name.startswith("torch"):
            hand_written = torch_cvae_step_fn if args.conditional else torch_step_fn
            step = hand_written(model, guide, 1e-3, capturable=name == "torch-graph")
        elif name == "fit-graph":
            step = replay_step_fn(model, guide, Trace_ELBO(), 1e-3, *example)
        else:
            # each Pyro variant keeps its own param store, swapped in around its steps
            step = pyro_step_fn(model, guide, 1e-3, name)
        variants[name] = graphed(step, *example) if name.endswith("-graph") else step

    times = time_interleaved(variants, x, batches, args, device, inputs)
    names = list(variants)
    median = {name: statistics.median(t) for name, t in times.items()}
    shape = "cvae-64+10-200-8 relu (scripts/examples/cvae.py), labels as a named input" if args.conditional else \
        "-".join(map(str, [data.x_dim, *config.pair.hidden, config.pair.latent_dim])) + f" {config.pair.activation}"
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{cpu_name()}, {torch.get_num_threads()} threads"
    reference = {name: "torch-graph" if name.endswith("-graph") else "torch" for name in names}
    ratios = {name: paired_ratio(times, name, reference[name]) for name in names}
    print(f"{args.dataset}, encoder {shape}, batch {args.batch_size}, device {device} ({where})")
    print(f"torch {torch.__version__}, pyro {pyro.__version__}; median of {args.rounds} rounds × {args.steps} steps "
          f"(× torch: the median of the rounds' ratios to the hand-written step, captured as a CUDA graph for "
          f"the -graph variants)")
    print(f"{'variant':<12}{'ms/step':>10}{'× torch':>10}")
    for name in names:
        print(f"{name:<12}{median[name]:>10.2f}{ratios[name]:>10.2f}")
    print("recorded in " + ", ".join(f"{s:.2f} s ({name})" for name, s in RECORDED.items()) +
          " (the first recording in a process includes loading torch's tracer)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": str(device), "where": where, "dataset": args.dataset, "network": shape,
                       "batch_size": args.batch_size, "median_ms": median, "rounds_ms": times,
                       "ratio_to_torch": ratios, "record_s": RECORDED,
                       "torch": torch.__version__, "pyro": pyro.__version__}, f, indent=2)


if __name__ == "__main__":
    main()
