"""``ppl-vae evaluate``: test ELBO and importance-sampled NLL of a trained run, or log p(x) by the
estimators of :mod:`ppl_vae.evaluation.estimators`, side by side."""

from __future__ import annotations

import argparse
import os

import pyro

from ppl_vae import parallel

from ppl_vae.data import batch_inputs
from ppl_vae.errors import UsageError
from ppl_vae.evaluation import estimators
from ppl_vae.evaluation.estimators.ais import bdmc, simulate
from ppl_vae.evaluation.evaluate import describe, evaluate
from ppl_vae.inference.validation import valid_points
from ppl_vae.io.rundir import write_json
from ppl_vae.evaluation.quantity import observed_quantity
from ppl_vae.pair import as_pyro_callable, callables
from ppl_vae.cli import options

NAMES = tuple(estimators.ESTIMATORS)


def estimator_list(text: str) -> list[str]:
    """'elbo,is,ais' -> ['elbo', 'is', 'ais'], each name once, in order; an unknown name is refused."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in NAMES]
    if unknown or not names:
        what = f"unknown estimator {unknown[0]!r}" if unknown else "no estimator named"
        raise argparse.ArgumentTypeError(f"{what}; choose comma-separated names from {', '.join(NAMES)}")
    return list(dict.fromkeys(names))


odd_order = options.checked(int, lambda v: v >= 1 and v % 2 == 1, "an odd integer ≥ 1 (1 is the ELBO, 3 the usual order)")


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="test ELBO and NLL of a run, or log p(x) by several estimators",
                       description="Estimate log p(x) on the test set by importance sampling with K particles "
                                   "from the guide (exactly for models with a closed form, such as ppca and gmm); "
                                   "writes RUN_DIR/eval.json, whose 'estimate' says which. With --estimator, "
                                   "estimate it instead by each estimator named (never by a closed form), each "
                                   "with its standard error over the test points and its wall time, under "
                                   "'estimators' in eval.json.")
    options.add_run_dir_arg(p)
    p.add_argument("--particles", "-k", type=options.positive_int, default=5000,
                   help="importance samples K (also the draws of q of --estimator elbo and perturbative)")
    p.add_argument("--estimator", type=estimator_list, default=None, metavar="NAMES",
                   help=f"comma-separated log p(x) estimators from {', '.join(NAMES)} (default: the test ELBO and "
                        f"importance-sampled NLL alone, as above)")
    p.add_argument("--perturbative-order", type=odd_order, default=3,
                   help="odd order K of the perturbative bound (1 is the ELBO)")
    p.add_argument("--ais-steps", type=options.positive_int, default=500, metavar="T",
                   help="annealing distributions T of ais and bdmc")
    p.add_argument("--ais-chains", type=options.positive_int, default=16, metavar="C",
                   help="AIS chains per test point")
    p.add_argument("--ais-leapfrog", type=options.positive_int, default=5, metavar="L",
                   help="leapfrog steps of each HMC transition")
    p.add_argument("--bdmc", action="store_true",
                   help="also bracket log p(x) by forward and reverse AIS (BDMC) on as many points simulated from "
                        "the run's model as there are test points")
    p.add_argument("--points", type=options.positive_int, default=None, metavar="N",
                   help="use the first N test points (default: all)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    options.add_seed_arg(p)
    options.add_device_arg(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    world = parallel.world()
    if world.parallel and (args.estimator or args.bdmc):
        raise UsageError("under torchrun, evaluate shards the test ELBO and importance-sampled NLL; --estimator and "
                         "--bdmc run in one process, so run them without torchrun.")
    run_ = options.open_run(args)
    if world.rank > 0:  # its points get particles from a stream of their own
        pyro.set_rng_seed(parallel.rank_seed(args.seed, world.rank))
    x, inputs = run_.data.x_test, run_.inputs()
    if args.points is not None:
        x, inputs = x[:args.points], batch_inputs(inputs, slice(0, args.points))
    path = os.path.join(args.run_dir, "eval.json")
    if args.estimator is None and not args.bdmc:
        results = evaluate(run_.model, run_.guide, x, particles=args.particles, inputs=inputs)
        results.update(epoch=run_.epoch, seed=args.seed, dataset=run_.config.data.dataset)
        if world.main:
            write_json(path, results)
        print(f"{describe(results)}; wrote {path}")
        return 0
    names = args.estimator or []
    estimators.check(names + ["bdmc"] * args.bdmc, run_.model, run_.guide, x, inputs)  # refusals before any work
    valid_points(*callables(run_.model, run_.guide), x, inputs, "test")  # Pyro's checks once, not at every step
    with pyro.validation_enabled(False):
        entries = run_estimators(args, run_, x, inputs, names)
    results = {"estimators": entries, "n": int(x.shape[0]), "epoch": run_.epoch, "seed": args.seed,
               "dataset": run_.config.data.dataset}
    label = observed_quantity(*callables(run_.model, run_.guide), x, inputs, as_pyro_callable(run_.model, "model"))
    results.update(label)
    write_json(path, results)
    print(f"test {label['quantity']} in nats per example, mean ± standard error over {x.shape[0]} test points; "
          f"wrote {path}")
    return 0


def run_estimators(args, run_, x, inputs: dict, names: list[str]) -> dict:
    """{name: eval.json's entry} of each estimator named, and of BDMC with --bdmc, each line printed as it ends."""
    ais_options = dict(steps=args.ais_steps, chains=args.ais_chains, leapfrog=args.ais_leapfrog)
    own = {"elbo": dict(particles=args.particles), "is": dict(particles=args.particles), "laplace": {},
           "perturbative": dict(particles=args.particles, order=args.perturbative_order), "ais": ais_options}
    entries = {}
    for name in names:
        pyro.set_rng_seed(args.seed)  # each estimator's number does not depend on which others ran
        entry = estimators.ESTIMATORS[name](run_.model, run_.guide, x, inputs=inputs, progress=args.progress,
                                            **own[name])
        print(estimators.describe(entry), flush=True)
        entries[name] = estimators.summary(entry)
    if args.bdmc:
        pyro.set_rng_seed(args.seed)
        x_sim, z_sim = simulate(run_.model, run_.guide, x, inputs)
        entry = bdmc(run_.model, run_.guide, x_sim, z_sim, inputs=inputs, progress=args.progress, **ais_options)
        print(estimators.describe(entry), flush=True)
        entries["bdmc"] = estimators.summary(entry)
    return entries
