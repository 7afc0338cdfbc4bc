"""``ppl-vae check SPEC``: what each objective does with a user's pair, before anything trains."""

from __future__ import annotations

import argparse

import pyro

from ppl_vae import registry
from ppl_vae.cli import options
from ppl_vae.inference import objectives
from ppl_vae.inference.checks import check, describe


def add_parser(sub) -> None:
    p = sub.add_parser("check", help="dry-run every objective on your own pair and say which can train it",
                       description="Build the pair that SPEC names (FILE.py:FACTORY or MODULE:FACTORY, a function "
                                   "make_pair(data) -> (model, guide)) on the data set, describe its sample sites "
                                   "and plates, and run each objective once on two training points: ok, or "
                                   "refused with the reason. Nothing is trained or written.")
    p.add_argument("pair", metavar="SPEC", help="FILE.py:FACTORY or MODULE:FACTORY")
    p.add_argument("--objectives", default=",".join(objectives.OBJECTIVES), metavar="LIST",
                   help="comma-separated objective names")
    options.add_data_args(p)
    p.add_argument("--particles", type=options.positive_int, default=2, help="particles K per data point")
    options.setting(p, "--batch-size", "the training's batch size: one that holds the whole data set checks a "
                                       "full-batch program on every point", type=options.positive_int)
    options.add_seed_arg(p)
    options.add_device_arg(p)
    p.set_defaults(run=run, config=None)


def run(args: argparse.Namespace) -> int:
    from ppl_vae.evaluation.compare import parse_names

    names = parse_names(args.objectives)
    config = options.config_from_args(args)
    run = registry.assemble(config, args.device)
    model, guide, data = run.model, run.guide, run.data
    with pyro.get_param_store().scope():
        print("\n".join(describe(model, guide, data)))
        table = check(model, guide, data, names, particles=args.particles, batch_size=config.training.batch_size)
    width = max(map(len, [*table, "objective"]))
    print(f"\n{'objective'.ljust(width)}  on {config.data.dataset}, K = {args.particles}")
    for name, verdict in table.items():
        print(f"{name.ljust(width)}  {verdict}")
    return 0
