"""Milliseconds per training step of every objective, relative to ``elbo``, and IWAE's cost in K.

Every variant trains the same networks (built by the registry from the same seed) on the
same mini-batches with Adam at the same learning rate:

- the step ``ppl_vae.fit`` takes (``GuardedSVI``, the run's one torch Adam, Pyro's distribution
  checks off; the step recorded and replayed for the objectives whose step is recordable) for each objective in
  :data:`ppl_vae.inference.objectives.OBJECTIVES` with K particles per data point, reported as
  ms/step and as a multiple of ``elbo``'s;
- the ``iwae`` step for K = 1, 5, 50, against ``torch-iwae``, the same IWAE step written
  by hand in PyTorch (z = μ + σ ε for all K at once, log-sum-exp over particles per data
  point, one ``torch.optim.Adam``), and the ``dreg`` step at K = 50 against ``torch-dreg``, DReG
  by hand (log q at detached parameters, the squared normalized weights on the guide's side,
  IWAE's gradient on the model's). Particles are a vectorized plate, so the step time should
  grow about linearly in K, with the ratio to the hand-written step staying flat.

Rounds are interleaved (each round times every variant for ``--steps`` steps, in rotating
order), so drift in the machine's speed hits all variants alike; medians over rounds are
printed, and written as JSON with ``--json``.

    python scripts/bench_objectives.py --json benchmarks/bench_objectives_digits_cpu.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F

from bench_train import cpu_name, guarded_step, paired_ratio, setup, time_interleaved
from ppl_vae import data as datasets
from ppl_vae import registry
from ppl_vae.config import PRESETS
from ppl_vae.inference import objectives

IWAE_K = (1, 5, 50)
BERNOULLI_ONLY = ("disarm", "arm")  # estimators for Bernoulli latents: the benchmark's VAE has Gaussian ones
DREG_K = 50


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="digits", choices=datasets.DATASETS)
    p.add_argument("--data-dir", default="data")
    p.add_argument("--preset", default=None, choices=list(PRESETS))
    p.add_argument("--particles", type=int, default=5, help="K for the table of all objectives")
    p.add_argument("--objectives", default=",".join(n for n in objectives.OBJECTIVES if n not in BERNOULLI_ONLY),
                   help="default: every objective that trains the Gaussian VAE (not disarm, arm)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--steps", type=int, default=20, help="steps per variant per round")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5, help="untimed steps per variant first")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", default=None, help="also write the results to this file")
    return p.parse_args()


def torch_iwae_step_fn(model, guide, particles: int, lr: float):
    """A hand-written IWAE step: the same networks and estimator as the ``iwae`` objective."""
    opt = torch.optim.Adam([*model.parameters(), *guide.parameters()], lr=lr)

    def step(x):
        loc, scale = guide(x)
        z = loc + scale * torch.randn((particles, *loc.shape), device=x.device)  # [K, B, d]
        log_lik = -F.binary_cross_entropy_with_logits(model.decoder(z), x.expand(particles, *x.shape),
                                                      reduction="none").sum(-1)
        log_prior = dist.Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_q = dist.Normal(loc, scale).log_prob(z).sum(-1)
        bound = torch.logsumexp(log_lik + log_prior - log_q, 0) - math.log(particles)
        opt.zero_grad(set_to_none=True)
        (-bound.sum()).backward()
        opt.step()

    return step


def torch_dreg_step_fn(model, guide, particles: int, lr: float):
    """A hand-written DReG step (Tucker et al. 2019): the same networks and estimator as ``dreg``."""
    opt = torch.optim.Adam([*model.parameters(), *guide.parameters()], lr=lr)
    theta, phi = list(model.parameters()), list(guide.parameters())

    def step(x):
        loc, scale = guide(x)
        z = loc + scale * torch.randn((particles, *loc.shape), device=x.device)
        log_lik = -F.binary_cross_entropy_with_logits(model.decoder(z), x.expand(particles, *x.shape),
                                                      reduction="none").sum(-1)
        log_w = (log_lik + dist.Normal(0.0, 1.0).log_prob(z).sum(-1)
                 - dist.Normal(loc.detach(), scale.detach()).log_prob(z).sum(-1))  # path derivative only
        w = log_w.detach().softmax(0)
        opt.zero_grad(set_to_none=True)
        torch.autograd.backward(-(torch.logsumexp(log_w, 0) - math.log(particles)).sum(), inputs=theta,
                                retain_graph=True)
        torch.autograd.backward(-(w ** 2 * log_w).sum(), inputs=phi)
        opt.step()

    return step


def fit_step_fn(model, guide, objective, lr: float, name: str):
    """The step ``ppl_vae.fit`` takes for ``objective`` (see :func:`bench_train.pyro_step_fn`): recorded at
    the variant ``name``'s first step where the objective's step is recordable."""
    return guarded_step(model, guide, objective.loss, lr, recorded=name if objective.recordable else None)


def main():
    args = parse_args()
    device, data, config, batches = setup(args)
    x = data.x_train

    def networks():
        pyro.clear_param_store()
        torch.manual_seed(0)
        return registry.build(config, data)

    names = [n.strip() for n in args.objectives.split(",") if n.strip()]
    zoo = {name: fit_step_fn(*networks(), objectives.make(name, particles=args.particles), 1e-3, name) for name in names}
    zoo_times = time_interleaved(zoo, x, batches, args, device)
    zoo_ms = {name: statistics.median(t) for name, t in zoo_times.items()}

    scaling = {}
    for k in IWAE_K:
        scaling[f"iwae-{k}"] = fit_step_fn(*networks(), objectives.make("iwae", particles=k), 1e-3, f"iwae-{k}")
        scaling[f"torch-iwae-{k}"] = torch_iwae_step_fn(*networks(), k, 1e-3)
    scaling[f"dreg-{DREG_K}"] = fit_step_fn(*networks(), objectives.make("dreg", particles=DREG_K), 1e-3,
                                            f"dreg-{DREG_K}")
    scaling[f"torch-dreg-{DREG_K}"] = torch_dreg_step_fn(*networks(), DREG_K, 1e-3)
    scaling_times = time_interleaved(scaling, x, batches, args, device)
    scaling_ms = {name: statistics.median(t) for name, t in scaling_times.items()}

    shape = "-".join(map(str, [data.x_dim, *config.pair.hidden, config.pair.latent_dim]))
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{cpu_name()}, {torch.get_num_threads()} threads"
    print(f"{args.dataset}, encoder {shape} {config.pair.activation}, batch {args.batch_size}, device {device} ({where})")
    print(f"torch {torch.__version__}, pyro {pyro.__version__}; median of {args.rounds} rounds × {args.steps} steps "
          f"(ratios: the median of the rounds' ratios)")
    print(f"\nall objectives, K = {args.particles} particles per data point")
    print(f"{'objective':<15}{'ms/step':>10}{'× elbo':>10}")
    for name in names:
        print(f"{name:<15}{zoo_ms[name]:>10.2f}{paired_ratio(zoo_times, name, 'elbo') if 'elbo' in zoo else math.nan:>10.2f}")
    print("\niwae against K, and against the hand-written PyTorch IWAE step")
    print(f"{'K':>4}{'iwae ms':>10}{'× K=1':>8}{'torch ms':>10}{'× torch':>9}")
    for k in IWAE_K:
        pyro_ms, torch_ms = scaling_ms[f"iwae-{k}"], scaling_ms[f"torch-iwae-{k}"]
        print(f"{k:>4}{pyro_ms:>10.2f}{pyro_ms / scaling_ms['iwae-1']:>8.2f}{torch_ms:>10.2f}"
              f"{paired_ratio(scaling_times, f'iwae-{k}', f'torch-iwae-{k}'):>9.2f}")
    dreg_ms, torch_ms = scaling_ms[f"dreg-{DREG_K}"], scaling_ms[f"torch-dreg-{DREG_K}"]
    print(f"\ndreg at K = {DREG_K}: {dreg_ms:.2f} ms, hand-written {torch_ms:.2f} ms, "
          f"{paired_ratio(scaling_times, f'dreg-{DREG_K}', f'torch-dreg-{DREG_K}'):.2f}× torch")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": str(device), "where": where, "dataset": args.dataset, "network": shape,
                       "batch_size": args.batch_size, "particles": args.particles, "median_ms": zoo_ms,
                       "iwae_scaling_ms": scaling_ms, "rounds_ms": {**zoo_times, **scaling_times}, "torch": torch.__version__, "pyro": pyro.__version__},
                      f, indent=2)


if __name__ == "__main__":
    main()
