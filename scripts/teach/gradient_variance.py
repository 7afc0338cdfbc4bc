"""Variance of reparameterized and score-function gradients of the ELBO as the samples grow.

A thin command-line wrapper: it runs notebooks/02_gradient_estimators.py (the demonstration's home;
see scripts/teach/_notebook.py) with the options below as the notebook's flags, and writes its
figures to --out. A toy with an exact answer: p(z) = N(0, I_D), p(x | z) = N(x; z, I_D) with
x = 1 observed, and q(z) = N(μ, σ² I) with μ = 0, σ = 0.8, so that ∇_μ ELBO = x − 2μ = 1. Three
unbiased estimators from S draws, each as the library computes it:

- reparameterized (Kingma & Welling 2014; Pyro's ``Trace_ELBO``);
- score function / REINFORCE (Williams 1992; ``ppl_vae.infer.ScoreFunctionELBO``);
- the same with a decaying-average baseline subtracted (Mnih & Gregor 2014;
  ``ScoreFunctionELBO("avg")``), which keeps it unbiased because E_q[∇_μ log q] = 0.

Each estimator is drawn R times; the figures show the total variance Σ_d Var(ĝ_d) against S
(every estimator falls as 1/S, the score function's from a far higher level) and against
the dimension D (the score function's grows with D faster than the reparameterized one's).

    python scripts/teach/gradient_variance.py [--repeats 2000] [--out runs/teach/gradient_variance]
"""

from __future__ import annotations

import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _notebook import run  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2000, help="independent estimates per point")
    parser.add_argument("--dim", type=int, default=10, help="latent dimension D of the first figure")
    parser.add_argument("--max-samples", type=int, default=256)
    parser.add_argument("--samples", type=int, default=10, help="draws S of the second figure")
    parser.add_argument("--max-dim", type=int, default=100, help="largest D of the second figure")
    parser.add_argument("--out", default="runs/teach/gradient_variance")
    args = parser.parse_args(argv)
    sample_counts = [2 ** i for i in range(int(math.log2(args.max_samples)) + 1)]
    dims = [d for d in (1, 2, 5, 10, 20, 50, 100) if d <= args.max_dim] or [1]

    def ratios(ns):
        v = ns["variance"]
        return (f"the score function's {(v['score function'] / v['reparameterized']).mean():.0f}× above the "
                f"reparameterized one's, {(v['score function, baseline'] / v['reparameterized']).mean():.0f}× "
                f"with the baseline")

    run("02_gradient_estimators.py",
        {"REPEATS": args.repeats, "DIM": args.dim, "SAMPLE_COUNTS": sample_counts, "SAMPLES_VS_DIM": args.samples,
         "DIMS": dims},
        args.out,
        [("variance_vs_samples", lambda ns: f"total variance against S at D = {args.dim}; every estimator falls as "
                                            f"1/S, {ratios(ns)}."),
         ("variance_vs_dimension", lambda ns: f"total variance against D at S = {args.samples}; growth from "
                                              f"D = {dims[0]} to {dims[-1]}: " + ", ".join(
                                                  f"{k} {v[-1] / v[0]:.0f}×" for k, v in ns["by_dim"].items()) + ".")])


if __name__ == "__main__":
    main()
