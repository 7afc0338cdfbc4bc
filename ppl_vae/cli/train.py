"""``ppl-vae train``: train a model/guide pair into a run directory, or resume one."""

from __future__ import annotations

import argparse
import os

import pyro

from ppl_vae import registry

from ppl_vae.io import checkpoint

from ppl_vae.classical import em
from ppl_vae.device import resolve_device
from ppl_vae.errors import UsageError
from ppl_vae.io.rundir import read_config, require_run
from ppl_vae.inference.trainer import fit, fit_options
from ppl_vae.cli import options


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model and guide by SVI into a run directory",
                       description="Train a model and guide by SVI (or fit ppca/gmm in closed form or by EM, "
                                   "--method); writes config.json, metrics.jsonl and checkpoint.pt (at the start, "
                                   "after every epoch and every --checkpoint-every steps) into the run directory. "
                                   "SIGINT/SIGTERM checkpoint and exit with 130/143; --resume continues, "
                                   "bit-identically on the CPU.")
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
    # Everything that can be checked is checked before any data is loaded or file written.
    if args.resume:
        require_run(args.resume)
        config, out = read_config(args.resume), args.resume
        checkpoint.load(os.path.join(out, checkpoint.NAME))  # corrupt, foreign or too new: refused now
        if args.epochs is not None:
            config["epochs"] = args.epochs
        config["device"] = args.device
    else:
        config, out = options.config_from_args(args), args.out
    history = train_from_config(config, out, resume=bool(args.resume), progress=args.progress)
    if not history:
        raise UsageError(f"{out} has no epochs to report; pass --epochs greater than 0.")
    last, what = history[-1], registry.bound_name(config)
    test = "no test set" if last["test_bound"] is None else f"test {what} {last['test_bound']:.2f}"
    print(f"epoch {last['epoch']}: train {what} {last['train_bound']:.2f}, {test} nats per example; "
          f"run directory {out}")
    return 0


def train_from_config(config: dict, out: str, *, resume: bool = False, progress: bool = True) -> list[dict]:
    """Build data, model and guide from ``config`` and train them into ``out`` by the config's method:
    SVI (``fit``) or the model's own closed form or EM (``ppl_vae.classical.em.fit``)."""
    registry.validate(config)
    svi = config.get("method", "svi") == "svi"
    objective = registry.build_objective(config) if svi else None
    device = resolve_device(config["device"])
    data = registry.load_data(config, device)
    pyro.set_rng_seed(config["seed"])  # the networks' initial weights
    model, guide = registry.build(config, data)  # checks that need the data's shapes
    options.writable_dir(out)  # only now: a refused command leaves no empty run folder behind
    if not svi:
        return em.fit(model, guide, data, config["method"], epochs=config["epochs"],
                      tol=config.get("tol", em.DEFAULT_TOL), seed=config["seed"], out=out, resume=resume,
                      config=config, progress=progress)
    return fit(model, guide, data, objective, device=device, out=out, resume=resume, config=config,
               progress=progress, **fit_options(config))
