"""The ladder of posterior families: every rung trained on one model, with its NLL and its gaps.

The rungs, from least to most expressive (the inference lecture's ladder): on the VAE, the fully
factorised Gaussian (``gaussian``), a full covariance (``full-cov``), auxiliary variables
(``auxiliary``), and the flows (``planar``, ``iaf``, ``realnvp``); on the two-stochastic-layer VAE,
the fully factorised q(z1 | x) q(z2 | x) (``two-layer-mf``) against the structured q(z1 | x) q(z2 | z1)
(``two-layer``), a pair. Every rung trains by the ELBO with the same data, seed, networks and
optimizer. For each the script reports the test ELBO, the test NLL by importance sampling (K
particles from the rung's own guide), the paired Δ NLL from the first rung on the same model, the
approximation and amortization gaps (``ppl_vae/evaluation/gaps.py``, Cremer et al. 2018) on the
first ``--gap-points`` test points, and the median seconds per epoch. The true posterior is the
NLL column itself: log p(x) = ELBO + KL(q ‖ p(z | x)), so the gap to it is what each family leaves.

Writes OUT/guide_table.md, OUT/guide_table.json and OUT/guide_table.png (Δ NLL and gaps per rung)
and prints the table:

    python scripts/guide_table.py --out runs/guide_table                       # digits, 100 epochs
    python scripts/guide_table.py --out runs/guide_table_mnist --dataset mnist \\
        --data-dir ../shared/data --preset iwae --epochs 10 --points 1000 --particles 1000

Options it does not know go to ``ppl-vae train`` (e.g. ``--hidden 64``). A run directory
that already holds a run is resumed up to ``--epochs``, so an interrupted table continues.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import numpy as np
import pyro

from ppl_vae.cli import main as ppl_vae
from ppl_vae.evaluation.evaluate import mean_and_se, per_point
from ppl_vae.evaluation.gaps import gaps
from ppl_vae.io.rundir import read_jsonl, write_json
from ppl_vae.run import load as load_run
from ppl_vae.text import count
from ppl_vae.viz import figures

# (rung, model): the ladder on the VAE, then the pair on the two-layer VAE
LADDER = (("gaussian", "vae"), ("full-cov", "vae"), ("auxiliary", "vae"), ("planar", "vae"), ("iaf", "vae"),
          ("realnvp", "vae"), ("two-layer-mf", "two-layer"), ("two-layer", "two-layer"))
TWO_LAYER_PRESET = {"iwae": "iwae2"}  # the two-layer model at the one-layer preset's paper: Burda et al.'s sizes


def train(out: str, guide: str, model: str, args, extra) -> None:
    common = ["--epochs", str(args.epochs), "--device", args.device] + ([] if args.progress else ["--no-progress"])
    if os.path.exists(os.path.join(out, "checkpoint.pt")):
        argv = ["train", "--resume", out, *common]
    else:
        preset = args.preset if model == "vae" else TWO_LAYER_PRESET.get(args.preset)
        argv = ["train", "--out", out, "--guide", guide, "--dataset", args.dataset, "--data-dir", args.data_dir,
                "--seed", str(args.seed), *(["--preset", preset] if preset else []),
                *([] if model == "vae" or preset else ["--model", model]), *common, *extra]
    code = ppl_vae(argv)
    if code:
        sys.exit(code)


def measure(out: str, args):
    """(results, log p̂_K per test point) of the run in ``out``."""
    run = load_run(out, args.device)
    pyro.set_rng_seed(args.seed)
    x = run.data.x_test[:args.points]
    elbo, log_px = per_point(run.model.model, run.guide.guide, x, args.particles)
    seconds = [m["seconds"] for m in read_jsonl(os.path.join(out, "metrics.jsonl"))]
    result = {"model": run.config.pair.model, "epoch": run.epoch, "n": int(x.shape[0]), "particles": args.particles,
              "seconds_per_epoch": statistics.median(seconds)}
    for key, values in (("test_elbo", elbo), ("test_nll", -log_px)):
        result[key], result[f"{key}_se"] = mean_and_se(values)
    pyro.set_rng_seed(args.seed)
    result["gaps"] = gaps(run.model, run.guide, x[:args.gap_points], particles=args.particles,
                          max_steps=args.gap_steps)
    return result, log_px


def table(results: dict, args) -> str:
    first = next(iter(results.values()))
    g = first["gaps"]
    lines = [f"{args.dataset}: every rung of the ladder trained by the ELBO with the same data, seed, networks and "
             f"optimizer ({count(first['epoch'], 'epoch')}); test ELBO and NLL on {first['n']} test points (NLL by "
             f"importance sampling with K = {args.particles} from the rung's guide), Δ NLL the paired difference "
             f"from the model's first rung on the same points; the gaps on the first {g['n']} test points "
             f"(approximation log p̂(x) − L[q*], amortization L[q*] − L[q], q* refined per point); nats per example",
             "", "| rung | model | test ELBO | test NLL | Δ NLL | approximation gap | amortization gap | s / epoch |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for rung, r in results.items():
        delta = "" if r["nll_change"] is None else f"{r['nll_change']:+.3f} ± {r['nll_change_se']:.3f}"
        g = r["gaps"]
        lines.append(f"| {rung} | {r['model']} | {r['test_elbo']:.2f} ± {r['test_elbo_se']:.2f} | "
                     f"{r['test_nll']:.2f} ± {r['test_nll_se']:.2f} | {delta} | "
                     f"{g['approximation_gap']:.3f} ± {g['approximation_gap_se']:.3f} | "
                     f"{g['amortization_gap']:.3f} ± {g['amortization_gap_se']:.3f} | {r['seconds_per_epoch']:.2f} |")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: str) -> str:
    """Δ NLL per rung from its model's first rung (paired, ±2 standard errors), and the two gaps stacked."""
    rungs = list(results)
    at = np.arange(len(rungs))
    fig, (left, right) = figures.figure(11, 4, ncols=2)
    delta = [results[r]["nll_change"] or 0.0 for r in rungs]
    left.errorbar(at, delta, yerr=[2 * (results[r]["nll_change_se"] or 0.0) for r in rungs], fmt="o", capsize=4)
    left.axhline(0.0, color="k", lw=0.8)
    left.set_ylabel("Δ test NLL (nats, paired, ±2 SE)")
    left.set_title("NLL against the model's first rung (lower is better)")
    approx = np.array([results[r]["gaps"]["approximation_gap"] for r in rungs])
    amort = np.array([results[r]["gaps"]["amortization_gap"] for r in rungs])
    right.bar(at, approx, label="approximation log p(x) − L[q*]", color="tab:blue",
              yerr=[2 * results[r]["gaps"]["approximation_gap_se"] for r in rungs], capsize=3)
    right.bar(at, amort, bottom=approx, label="amortization L[q*] − L[q]", color="tab:orange",
              yerr=[2 * results[r]["gaps"]["amortization_gap_se"] for r in rungs], capsize=3)
    right.set_ylabel("nats per example (±2 SE)")
    right.set_title("gaps per rung")
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.set_xticks(at, rungs, rotation=30, ha="right")
    fig.tight_layout()
    return figures.save(fig, path)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="runs/guide_table", help="folder for the run directories and the table")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--preset", default=None, help="the VAE's preset (iwae: the two-layer rungs take iwae2)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--particles", type=int, default=5000, help="importance samples K for the NLL and the gaps")
    p.add_argument("--points", type=int, default=None, help="evaluate on the first N test points (default: all)")
    p.add_argument("--gap-points", type=int, default=50, help="the gaps on the first N test points")
    p.add_argument("--gap-steps", type=int, default=1000, help="refinement steps per point at most")
    p.add_argument("--rungs", default=",".join(r for r, _ in LADDER), help="comma-separated subset of the ladder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--no-progress", dest="progress", action="store_false")
    args, extra = p.parse_known_args(argv)
    chosen = set(args.rungs.split(","))
    results, log_px, first_of = {}, {}, {}
    for rung, model in LADDER:
        if rung not in chosen:
            continue
        out = os.path.join(args.out, rung)
        train(out, rung, model, args, extra)
        results[rung], log_px[rung] = measure(out, args)
        first = first_of.setdefault(model, rung)
        results[rung]["nll_change"], results[rung]["nll_change_se"] = (None, None) if first == rung else \
            mean_and_se(log_px[first] - log_px[rung])
    write_json(os.path.join(args.out, "guide_table.json"), results)
    text = table(results, args)
    with open(os.path.join(args.out, "guide_table.md"), "w") as f:
        f.write(text)
    plot(results, os.path.join(args.out, "guide_table.png"))
    print(text, end="")


if __name__ == "__main__":
    main()
