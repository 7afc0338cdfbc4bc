"""``ppl-vae evaluate``: test ELBO and importance-sampled NLL of a trained run."""

from __future__ import annotations

import argparse
import os

from ppl_vae.evaluation.evaluate import describe, evaluate
from ppl_vae.io.rundir import write_json
from ppl_vae.cli import options


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="test ELBO and importance-sampled NLL of a run",
                       description="Estimate log p(x) on the test set by importance sampling with K particles "
                                   "from the guide (exactly for models with a closed form, such as ppca and gmm); "
                                   "writes RUN_DIR/eval.json, whose 'estimate' says which.")
    options.add_run_dir_arg(p)
    p.add_argument("--particles", "-k", type=options.positive_int, default=5000, help="importance samples K")
    options.add_seed_arg(p)
    options.add_device_arg(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    run_ = options.open_run(args)
    results = evaluate(run_.model, run_.guide, run_.data.x_test, particles=args.particles, inputs=run_.inputs())
    results.update(epoch=run_.epoch, seed=args.seed, dataset=run_.config.data.dataset)
    path = os.path.join(args.run_dir, "eval.json")
    write_json(path, results)
    print(f"{describe(results)}; wrote {path}")
    return 0
