"""The README's guide table: one model, four encoders, and the gaps of the diagonal one.

Trains the same VAE (same data, seed, networks and optimizer) with the diagonal Gaussian,
full-covariance, planar-flow and IAF guides by the ELBO, then reports for each the test
ELBO and the importance-sampled test NLL (K particles from its own guide), and for the
diagonal encoder the approximation and amortization gaps (``ppl_vae/evaluation/gaps.py``, Cremer et
al. 2018). Writes OUT/guide_table.md and OUT/guide_table.json and prints the table.

    python scripts/guide_table.py --out runs/guide_table                       # digits, 100 epochs
    python scripts/guide_table.py --out runs/guide_table_mnist --dataset mnist \\
        --data-dir ../shared/data --preset iwae --epochs 50 --points 1000

Options it does not know go to ``ppl-vae train`` (e.g. ``--hidden 64``). A run directory
that already holds a run is resumed up to ``--epochs``, so an interrupted table continues.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import pyro

from ppl_vae.cli import main as ppl_vae
from ppl_vae.evaluation.evaluate import mean_and_se, per_point
from ppl_vae.evaluation.gaps import gaps
from ppl_vae.run import load as load_run
from ppl_vae.io.rundir import read_jsonl, write_json
from ppl_vae.text import count

GUIDES = ("gaussian", "full-cov", "planar", "iaf")


def train(out: str, guide: str, args, extra) -> None:
    common = ["--epochs", str(args.epochs), "--device", args.device] + ([] if args.progress else ["--no-progress"])
    if os.path.exists(os.path.join(out, "checkpoint.pt")):
        argv = ["train", "--resume", out, *common]
    else:
        argv = ["train", "--out", out, "--guide", guide, "--dataset", args.dataset, "--data-dir", args.data_dir,
                "--seed", str(args.seed), *common, *extra]
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
    result = {"epoch": run.epoch, "n": int(x.shape[0]), "particles": args.particles,
              "seconds_per_epoch": statistics.median(seconds)}
    for key, values in (("test_elbo", elbo), ("test_nll", -log_px)):
        result[key], result[f"{key}_se"] = mean_and_se(values)
    if run.config.pair.guide == "gaussian":
        result["gaps"] = gaps(run.model, run.guide, x, particles=args.particles)
    return result, log_px


def table(results: dict, args) -> str:
    first = results["gaussian"]
    lines = [f"{args.dataset}: test ELBO and NLL of each guide on the same model (architecture, data, seed) "
             f"({count(first['epoch'], 'epoch')}, {first['n']} test points, NLL by importance sampling with "
             f"K = {args.particles} from the guide), nats per example; Δ NLL is the paired difference "
             f"from the diagonal guide on the same test points",
             "", "| guide | test ELBO | test NLL | Δ NLL | s / epoch (median) |", "| --- | ---: | ---: | ---: | ---: |"]
    for guide, r in results.items():
        delta = f"{r['nll_change']:+.3f} ± {r['nll_change_se']:.3f}" if guide != "gaussian" else ""
        lines.append(f"| {guide} | {r['test_elbo']:.2f} ± {r['test_elbo_se']:.2f} | "
                     f"{r['test_nll']:.2f} ± {r['test_nll_se']:.2f} | {delta} | {r['seconds_per_epoch']:.2f} |")
    g = first["gaps"]
    lines += ["", f"Gaps of the diagonal encoder (q* refined per test point for {g['refine_steps']} steps):", "",
              "| log p(x) | L[q*] | L[q] | approximation gap | amortization gap |",
              "| ---: | ---: | ---: | ---: | ---: |",
              f"| {g['log_px']:.2f} | {g['elbo_q_star']:.2f} | {g['elbo_q']:.2f} | "
              f"{g['approximation_gap']:.3f} ± {g['approximation_gap_se']:.3f} | "
              f"{g['amortization_gap']:.3f} ± {g['amortization_gap_se']:.3f} |"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="runs/guide_table", help="folder for the run directories and the table")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--particles", type=int, default=5000, help="importance samples K for the NLL and the gaps")
    p.add_argument("--points", type=int, default=None, help="evaluate on the first N test points (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--no-progress", dest="progress", action="store_false")
    args, extra = p.parse_known_args(argv)
    results, log_px = {}, {}
    for guide in GUIDES:
        out = os.path.join(args.out, guide)
        train(out, guide, args, extra)
        results[guide], log_px[guide] = measure(out, args)
        results[guide]["nll_change"], results[guide]["nll_change_se"] = mean_and_se(log_px["gaussian"] - log_px[guide])
    write_json(os.path.join(args.out, "guide_table.json"), results)
    text = table(results, args)
    with open(os.path.join(args.out, "guide_table.md"), "w") as f:
        f.write(text)
    print(text, end="")


if __name__ == "__main__":
    main()
