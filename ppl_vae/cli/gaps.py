"""``ppl-vae gaps``: the approximation and amortization gaps of a run's encoder on test points."""

from __future__ import annotations

import argparse
import os

from ppl_vae.evaluation.gaps import gaps, plot
from ppl_vae.io.rundir import write_json
from ppl_vae.cli import options
from ppl_vae.errors import UsageError


def add_parser(sub) -> None:
    p = sub.add_parser("gaps", help="approximation and amortization gaps of a run's encoder",
                       description="Refine q per test point from the encoder's output until its ELBO converges "
                                   "(Cremer et al. 2018) — a table of (m, s) for the diagonal encoder, a copy of "
                                   "the encoder's weights per point for any other — and report log p(x), L[q*], "
                                   "L[q] and the gaps log p(x) − L[q*] and L[q*] − L[q]. Writes RUN_DIR/gaps.json "
                                   "and gaps.png.")
    options.add_run_dir_arg(p)
    p.add_argument("--points", type=options.positive_int, default=1000, help="the first N test points")
    p.add_argument("--particles", "-k", type=options.positive_int, default=5000,
                   help="importance samples K for log p(x) and the ELBOs")
    p.add_argument("--refine-particles", type=options.positive_int, default=10,
                   help="particles per refinement step")
    p.add_argument("--refine-lr", type=options.positive_float, default=None,
                   help="Adam learning rate of q* (default: 0.05 for the diagonal encoder's table, 3e-3 for a copy "
                        "of another encoder's weights)")
    p.add_argument("--max-steps", type=options.positive_int, default=3000, help="refinement steps at most")
    p.add_argument("--tol", type=options.positive_float, default=0.01,
                   help="a plateau: the mean ELBO rose by less than this over 50 steps (nats); the learning rate "
                        "is divided by 5 at each plateau, and refinement stops at the fourth")
    options.add_seed_arg(p)
    options.add_device_arg(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    run_ = options.open_run(args)
    if run_.inputs("test"):
        raise UsageError("gaps refines q per test point from x alone, and this pair takes named inputs (labels, "
                         "covariates) that it would not pass; use ppl-vae evaluate, which passes them.")
    x = run_.data.x_test[:args.points]
    result = gaps(run_.model, run_.guide, x, args.particles, refine_particles=args.refine_particles,
                  lr=args.refine_lr, max_steps=args.max_steps, tol=args.tol)
    result.update(epoch=run_.epoch, seed=args.seed, dataset=run_.config.data.dataset)
    path = os.path.join(args.run_dir, "gaps.json")
    write_json(path, result)
    plot(result, os.path.join(args.run_dir, "gaps.png"))
    print(f"log p(x) {result['log_px']:.2f}, L[q*] {result['elbo_q_star']:.2f}, L[q] {result['elbo_q']:.2f}; "
          f"approximation gap {result['approximation_gap']:.3f} ± {result['approximation_gap_se']:.3f}, "
          f"amortization gap {result['amortization_gap']:.3f} ± {result['amortization_gap_se']:.3f} nats per example "
          f"({result['n']} test points, K = {args.particles}, q* after {result['refine_steps']} steps); "
          f"wrote {path} and gaps.png")
    return 0
