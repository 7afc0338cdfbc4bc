"""Seconds to estimate the test NLL by importance sampling: ``ppl_vae.evaluate`` against a hand-written
PyTorch importance sampler of the same networks, in one process.

Both draw K particles z_k ~ q(z | x) per test point and compute
log p̂_K(x) = log (1/K) Σ_k p(x | z_k) p(z_k) / q(z_k | x) with a running log-sum-exp over chunks
of particles, under ``torch.no_grad()``. ``evaluate`` goes through Pyro (a trace of the guide and
a replay of the model per chunk, chunks sized by the device's memory budget); the reference
calls the encoder and decoder directly, with chunks of the same size. The networks are the
default VAE's (or ``--preset iwae``), untrained: their speed does not depend on the weights.
Rounds are interleaved; the median over rounds and the ratio are printed.

    python scripts/bench_eval.py
    python scripts/bench_eval.py --dataset mnist --data-dir ../shared/data --preset iwae --points 1000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F

from ppl_vae import data as datasets
from ppl_vae import registry
from ppl_vae.config import PRESETS, Config
from ppl_vae.device import resolve_device
from ppl_vae.evaluation.evaluate import evaluate
from ppl_vae.inference.chunks import chunk_sizes, max_elements_for
from ppl_vae.memory import keep_freed_memory
from bench_train import paired_ratio


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="digits", choices=datasets.DATASETS)
    p.add_argument("--data-dir", default="data")
    p.add_argument("--preset", default=None, choices=list(PRESETS))
    p.add_argument("--points", type=int, default=1000, help="test points (at most the test set)")
    p.add_argument("--particles", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", default=None)
    return p.parse_args()


@torch.no_grad()
def hand_written(model, guide, x, particles: int, max_elements: int) -> torch.Tensor:
    """log p̂_K(x) per point, by the networks themselves."""
    batch, k_chunk = chunk_sizes(x.shape[0], x[0].numel(), particles, max_elements)
    out = []
    for xb in x.split(batch):
        loc, scale = guide(xb)
        lse = xb.new_full((xb.shape[0],), -math.inf)
        for start in range(0, particles, k_chunk):
            k = min(k_chunk, particles - start)
            z = loc + scale * torch.randn(k, *loc.shape, device=x.device)
            log_lik = -F.binary_cross_entropy_with_logits(model.decoder(z), xb.expand(k, -1, -1),
                                                          reduction="none").sum(-1)
            log_w = log_lik + dist.Normal(0.0, 1.0).log_prob(z).sum(-1) - dist.Normal(loc, scale).log_prob(z).sum(-1)
            lse = torch.logaddexp(lse, torch.logsumexp(log_w, 0))
        out.append(lse - math.log(particles))
    return torch.cat(out)


def main():
    args = parse_args()
    keep_freed_memory()  # as the CLI sets glibc (ppl_vae/memory.py), for both variants alike
    device = resolve_device(args.device)
    data = datasets.load(args.dataset, data_dir=args.data_dir, binarize="dynamic", device=device)
    config = registry.resolve(Config.from_dict({"preset": args.preset} if args.preset else {}))
    torch.manual_seed(0)
    model, guide = registry.build(config, data)
    x = data.x_test[:args.points]
    budget = max_elements_for(device)
    variants = {"torch": lambda: hand_written(model, guide, x, args.particles, budget),
                "evaluate": lambda: evaluate(model, guide, x, particles=args.particles)}
    times = {name: [] for name in variants}
    results = {}
    for r in range(args.rounds):
        names = list(variants)[r % 2:] + list(variants)[:r % 2]
        for name in names:
            pyro.set_rng_seed(r)
            start = time.perf_counter()
            results[name] = variants[name]()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    nll = {"torch": -results["torch"].mean().item(), "evaluate": results["evaluate"]["test_nll"]}
    shape = "-".join(map(str, [data.x_dim, *config.pair.hidden, config.pair.latent_dim]))
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"{args.dataset}, encoder {shape}, {x.shape[0]} test points, K = {args.particles}, device {device} ({where}), "
          f"chunks of ≤ {budget} elements; median of {args.rounds} rounds "
          f"(× torch: the median of the rounds' ratios)")
    print(f"{'variant':<10}{'seconds':>10}{'× torch':>10}{'NLL':>10}")
    for name in variants:
        print(f"{name:<10}{median[name]:>10.2f}{paired_ratio(times, name, 'torch'):>10.2f}{nll[name]:>10.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": str(device), "where": where, "dataset": args.dataset, "network": shape,
                       "points": int(x.shape[0]), "particles": args.particles, "median_s": median,
                       "rounds_s": times, "nll": nll}, f, indent=2)


if __name__ == "__main__":
    main()
