"""``ppl-vae train``: train a model/guide pair into a run directory, or resume one."""

from __future__ import annotations

import argparse
import os

from ppl_vae import registry
from ppl_vae.errors import UsageError
from ppl_vae.io import checkpoint
from ppl_vae.run import config_of, train
from ppl_vae.cli import options
from ppl_vae.cli.options import given_settings


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
    options.add_trust_code_arg(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Everything that can be checked is checked before any data is loaded or file written.
    if args.resume:
        config, out = config_of(args.resume), args.resume
        checkpoint.load(os.path.join(out, checkpoint.NAME))  # corrupt, foreign or too new: refused now
        given, recorded = given_settings(args), config.to_dict()
        changed = {k: v for k, v in given.items() if k in ("epochs", "device") or v != recorded.get(k)}
        others = sorted(set(changed) - {"epochs", "device"}) + (["config"] if args.config else [])
        if others:
            flag = "--" + others[0].replace("_", "-")
            raise UsageError(f"--resume continues the run with its own configuration, so {flag} cannot change it "
                             f"(only --epochs and --device can); drop {flag}, or train a new run with --out.")
        config = config.replace(**changed)
    else:
        config, out = options.config_from_args(args), args.out
    history = train(config, out, resume=bool(args.resume), progress=True if args.progress else "log",
                    trust_code=args.trust_code)
    if not history:
        raise UsageError(f"{out} has no epochs to report; pass --epochs greater than 0.")
    resolved = registry.resolve(config)
    last, what = history[-1], registry.bound_name(resolved)
    given = f" given q({', '.join(last['test_bound_given'])})" if "test_bound_given" in last else ""
    test = "no test set" if last["test_bound"] is None else f"test {what}{given} {last['test_bound']:.2f}"
    trained = f"train {registry.train_name(resolved)} {last['train_bound']:.2f}"
    print(f"epoch {last['epoch']}: {trained}, {test} nats per example; run directory {out}")
    return 0
