"""``ppl-vae train``: train a model/guide pair into a run directory, or resume one."""

from __future__ import annotations

import argparse

import pyro

from .. import registry
from ..device import resolve_device
from ..errors import UsageError
from ..rundir import read_config, require_run
from ..train import fit
from . import options


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model and guide by SVI into a run directory",
                       description="Train a model and guide by SVI; writes config.json, metrics.jsonl and "
                                   "checkpoint.pt (after every epoch) into the run directory.")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", metavar="RUN_DIR", help="new run directory")
    where.add_argument("--resume", metavar="RUN_DIR",
                       help="continue this run from its checkpoint (its config is reused; --epochs and "
                            "--device may change)")
    options.add_data_args(p)
    options.add_model_args(p)
    options.add_objective_args(p)
    options.add_training_args(p)
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.resume:
        require_run(args.resume)
        config, out = read_config(args.resume), args.resume
        if args.epochs is not None:
            config["epochs"] = args.epochs
        config["device"] = args.device
    else:
        config, out = options.config_from_args(args), args.out
    registry.validate(config)
    device = resolve_device(config["device"])
    data = registry.load_data(config, device)
    pyro.set_rng_seed(config["seed"])  # the networks' initial weights
    model, guide = registry.build(config, data)
    objective = registry.build_objective(config)
    options.writable_dir(out)
    history = fit(model, guide, data, objective, epochs=config["epochs"],
                  batch_size=config["batch_size"], lr=config["lr"], lr_milestones=config["lr_milestones"],
                  lr_gamma=config["lr_gamma"], seed=config["seed"], device=device, out=out,
                  resume=bool(args.resume), config=config, progress=args.progress, drop_last=config["drop_last"],
                  schedule=config.get("schedule", "joint"), e_steps=config.get("e_steps", 1))
    if not history:
        raise UsageError(f"{out} has no epochs to report; pass --epochs greater than 0.")
    last = history[-1]
    print(f"epoch {last['epoch']}: train bound {last['train_bound']:.2f}, test bound {last['test_bound']:.2f} "
          f"nats per example; run directory {out}")
    return 0
