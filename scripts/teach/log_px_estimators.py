"""Estimating log p(x) five ways, side by side, on one trained VAE.

For a test image x the marginal likelihood log p(x) = log ∫ p_θ(x, z) dz has no closed form for a
VAE. The lectures' estimators, each from ``ppl_vae.evaluation.estimators`` (one module each, every
one checked against probabilistic PCA's exact value in ``tests/evaluation/test_estimators.py``):

- the ELBO E_q[log p_θ(x, z) − log q_φ(z | x)] (Kingma & Welling 2014), a lower bound;
- importance sampling log (1/K) Σ_k p_θ(x, z_k) / q_φ(z_k | x), z_k ~ q_φ(z | x) (Burda et al. 2016),
  a stochastic lower bound that rises toward log p(x) with K;
- Laplace: log p_θ(x, z*) + (d/2) log 2π − ½ log det H at the mode z* (Tierney & Kadane 1986), an
  approximation, exact only for a Gaussian posterior;
- the perturbative bound of order 3 (Bamler et al. 2017): V₀ + log E_q[Σ_{k≤3} (log w − V₀)^k / k!],
  a stochastic lower bound between the ELBO's order 1 and importance sampling's all orders;
- annealed importance sampling from q_φ(z | x) to p_θ(z | x) by HMC over T distributions (Neal 2001;
  Wu et al. 2017), a stochastic lower bound that rises toward log p(x) with T.

The figure plots each estimate against its compute — draws of q (K) for importance sampling,
annealing steps (T) for AIS, the ELBO and perturbative bound at their K, Laplace at one
"draw" (its mode) — and, on the right, against wall-clock seconds. Error bars are 2 standard
errors of each estimate's per-point difference from AIS at the largest T: the estimators see the
same test points, so their differences are far more precise than the standard error of any one
mean over the points (the table's SE), which mostly measures how the test images differ.

    python scripts/teach/log_px_estimators.py [--run RUN_DIR] [--points N] [--out runs/teach/log_px_estimators]

Without --run it trains the demo's VAE (`ppl-vae train --out runs/demo`, the defaults) first.
"""

from __future__ import annotations

import argparse
import json
import math
import os

import pyro
from tqdm.auto import tqdm

from ppl_vae import registry
from ppl_vae.config import Config
from ppl_vae.data import batch_inputs
from ppl_vae.evaluation.estimators import ESTIMATORS
from ppl_vae.run import load, train
from ppl_vae.viz import figures


def int_list(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def compute(entry: dict) -> int:
    """The x coordinate of an estimate: K draws of q, T annealing steps, or 1 (Laplace's mode)."""
    return entry.get("steps") or entry.get("particles") or 1


def label(entry: dict) -> str:
    name = entry["estimator"]
    return {"elbo": f"ELBO, K = {entry.get('particles')}", "is": f"IS, K = {entry.get('particles')}",
            "laplace": "Laplace", "perturbative": f"perturbative K = {entry.get('order')}, S = {entry.get('particles')}",
            "ais": f"AIS, T = {entry.get('steps')}, C = {entry.get('chains')}"}[name]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", metavar="RUN_DIR", help="a trained run (default: train the demo's VAE into OUT/run)")
    parser.add_argument("--epochs", type=int, default=100, help="epochs of the VAE trained without --run")
    parser.add_argument("--points", type=int, default=None, help="the first N test points (default: all)")
    parser.add_argument("--particles", type=int_list, default=[1, 10, 100, 1000, 5000],
                        help="K of importance sampling; the largest is also the ELBO's and the perturbative bound's")
    parser.add_argument("--ais-steps", type=int_list, default=[10, 100, 500], help="T of AIS")
    parser.add_argument("--ais-chains", type=int, default=16, help="AIS chains per point")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="runs/teach/log_px_estimators")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    run_dir = args.run
    if run_dir is None:
        run_dir = os.path.join(args.out, "run")
        train(registry.resolve(Config.from_dict({"epochs": args.epochs})), run_dir, progress=False)
    run = load(run_dir, args.device)
    x, inputs = run.data.x_test, run.inputs()
    if args.points:
        x, inputs = x[:args.points], batch_inputs(inputs, slice(0, args.points))

    k_max = max(args.particles)
    jobs = [("elbo", dict(particles=k_max)), ("laplace", {}), ("perturbative", dict(particles=k_max, order=3))]
    jobs += [("is", dict(particles=k)) for k in args.particles]
    jobs += [("ais", dict(steps=t, chains=args.ais_chains)) for t in args.ais_steps]
    entries = []
    for name, options in tqdm(jobs, desc="estimators", unit="estimate"):
        pyro.set_rng_seed(args.seed)
        entries.append(ESTIMATORS[name](run.model, run.guide, x, inputs=inputs, progress=True, **options))

    reference = max((e for e in entries if e["estimator"] == "ais"), key=compute)
    for e in entries:  # a Laplace point left out (H not positive definite) is left out of its difference too
        d = (e["per_point"] - reference["per_point"])
        d = d[~d.isnan()]
        e["minus_reference"], e["minus_reference_se"] = d.mean().item(), d.std().item() / math.sqrt(d.numel())
    ref_name = label(reference)
    header = ["estimator", "what it is", "compute", "estimate", "SE", f"− {ref_name} (paired SE)", "seconds"]
    rows = [[label(e), e["quantity"], str(compute(e)), f"{e['estimate']:.3f}", f"{e['se']:.3f}",
             f"{e['minus_reference']:+.3f} ({e['minus_reference_se']:.3f})", f"{e['seconds']:.1f}"] for e in entries]
    table = "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                      + ["| " + " | ".join(r) + " |" for r in rows])
    caption = (f"log p(x) of {run.data.name} test images ({x.shape[0]} points), nats per image, run {run_dir} "
               f"(epoch {run.epoch}); SE: standard error over the points; compute: draws of q (K) or annealing "
               f"steps (T); seconds: wall time on the {args.device}.")
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(caption + "\n\n" + table + "\n")
    with open(os.path.join(args.out, "table.json"), "w") as f:
        json.dump({"caption": caption, "entries": [{k: v for k, v in e.items() if k != "per_point"} for e in entries]},
                  f, indent=2)

    fig, axes = figures.figure(12.0, 5.0, ncols=2)
    for ax, key, xlabel in ((axes[0], compute, "compute: draws of q (K) or annealing steps (T)"),
                            (axes[1], lambda e: e["seconds"], "wall-clock seconds")):
        for name, style in (("is", "o-"), ("ais", "s-")):
            line = [e for e in entries if e["estimator"] == name]
            ax.errorbar([key(e) for e in line], [e["estimate"] for e in line], fmt=style, capsize=3,
                        yerr=[2 * e["minus_reference_se"] for e in line],
                        label="importance sampling" if name == "is" else f"AIS, {args.ais_chains} chains")
        for name, marker in (("elbo", "v"), ("laplace", "D"), ("perturbative", "^")):
            e = next(e for e in entries if e["estimator"] == name)
            ax.errorbar([key(e)], [e["estimate"]], yerr=[2 * e["minus_reference_se"]], fmt=marker, capsize=3,
                        markersize=8, label=label(e))
        ax.set_xscale("log")
        ax.set(xlabel=xlabel, ylabel="estimate of log p(x), nats per test image")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle(f"log p(x) five ways: {x.shape[0]} {run.data.name} test images (error bars: 2 SE of the "
                 f"difference from {ref_name})", fontsize=10)
    fig.tight_layout()
    path = figures.save(fig, os.path.join(args.out, "estimates_vs_compute.png"))

    print(caption)
    print(table)
    first = {name: next(e for e in entries if e["estimator"] == name) for name in ("elbo", "laplace", "perturbative")}
    curves = {name: [e for e in entries if e["estimator"] == name] for name in ("is", "ais")}
    print(f"wrote {path}: each estimate against its compute and its seconds — importance sampling "
          f"{curves['is'][0]['estimate']:.2f} (K = {compute(curves['is'][0])}) to {curves['is'][-1]['estimate']:.2f} "
          f"(K = {compute(curves['is'][-1])}), AIS {curves['ais'][0]['estimate']:.2f} (T = {compute(curves['ais'][0])}) "
          f"to {curves['ais'][-1]['estimate']:.2f} (T = {compute(curves['ais'][-1])}); ELBO "
          f"{first['elbo']['estimate']:.2f}, perturbative {first['perturbative']['estimate']:.2f}, Laplace "
          f"{first['laplace']['estimate']:.2f}.")
    print(f"wrote {os.path.join(args.out, 'table.md')} and table.json")


if __name__ == "__main__":
    main()
