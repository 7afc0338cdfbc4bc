"""``ppl-vae compare``: train one model and guide with several objectives and tabulate the results."""

from __future__ import annotations

import argparse
import os

from ppl_vae import registry
from ppl_vae.evaluation.compare import compare, parse_names
from ppl_vae.errors import UsageError
from ppl_vae.inference.objectives import COMPARED
from ppl_vae.cli import options
from ppl_vae.io.rundir import output_dir

EPOCHS = 50  # all ten objectives at K = 50 on digits in a few minutes on two CPU cores
PARTICLES = 50


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="train with several objectives and compare bounds, NLL, gradient noise, time",
                       description="Train the same model and guide, from the same initial weights, data order and "
                                   "seed, with each objective into OUT/<objective>; then write OUT/comparison.csv, "
                                   "OUT/comparison.md and plots of the test IWAE-K bound against epoch and time.")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the runs, the table and the plots")
    p.add_argument("--objectives", default=",".join(COMPARED), metavar="LIST",
                   help="comma-separated objective names")
    options.add_data_args(p)
    options.add_model_args(p)
    g = p.add_argument_group("objectives")
    g.add_argument("--particles", type=options.positive_int, default=argparse.SUPPRESS,
                   help=f"particles K per data point, for every objective and for the test IWAE-K bound "
                        f"(default: {PARTICLES})")
    options.add_objective_options(g)
    options.add_training_args(p, epochs=f"epochs of every run (default: {EPOCHS})")
    g = p.add_argument_group("measurements")
    g.add_argument("--eval-particles", type=options.positive_int, default=1000,
                   help="importance samples S for the test NLL")
    g.add_argument("--snr-samples", type=options.positive_int, default=100,
                   help="gradient estimates M for the signal-to-noise ratios")
    p.add_argument("--jobs", type=options.positive_int, default=1,
                   help="objectives trained at once, each in its own process with its share of the CPU threads "
                        "(the table is the same)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bars")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    names = parse_names(args.objectives)
    config = options.config_from_args(args, epochs=EPOCHS, particles=PARTICLES)
    if config.training.epochs < 1:
        raise UsageError(f"--epochs must be at least 1 to compare objectives, got {config.training.epochs}.")
    for name in names:  # every run's combination, before any of them trains
        registry.check(config.replace(objective=name))
    if registry.is_point_mass(config):
        raise UsageError(f"--guide {config.pair.guide} is a point mass, with no density to importance-weight, so "
                         f"compare's test bounds and NLL do not exist for it; compare objectives on another --guide.")
    with output_dir(args.out):
        rows = compare(config, names, args.out, eval_particles=args.eval_particles,
                       snr_samples=args.snr_samples, progress=args.progress, jobs=args.jobs)
    with open(os.path.join(args.out, "comparison.md")) as f:
        print(f.read(), end="")
    print(f"wrote {len(rows)} runs, comparison.csv, comparison.md, comparison_epochs.png and comparison_time.png "
          f"to {args.out}")
    return 0
