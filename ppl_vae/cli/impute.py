"""``ppl-vae impute``: fill in masked pixels of test images from a trained model."""

from __future__ import annotations

import argparse
import os

from ppl_vae.errors import UsageError
from ppl_vae.evaluation import impute

from ppl_vae.viz import plots
from ppl_vae.io.rundir import write_json
from ppl_vae.cli import options


def add_parser(sub) -> None:
    p = sub.add_parser("impute", help="fill in missing pixels of test images (pseudo-Gibbs + importance resampling)",
                       description="Hide pixels of test images and fill them in from the model: pseudo-Gibbs "
                                   "sampling with the encoder, then importance resampling of p(z | observed "
                                   "pixels). Writes RUN_DIR/impute-MASK.json (errors on the missing pixels, "
                                   "effective sample size) and RUN_DIR/figures/impute-MASK.png.")
    options.add_run_dir_arg(p)
    p.add_argument("--mask", required=True, choices=impute.MASKS,
                   help="which pixels to hide: the top half of each image, or a random --fraction of them")
    p.add_argument("--fraction", type=options.fraction, default=0.5, help="share of pixels hidden by --mask random")
    p.add_argument("--n", type=options.positive_int, default=300, help="test images to fill in (at most the test set)")
    p.add_argument("--particles", "-k", type=options.positive_int, default=1000, help="importance samples K")
    p.add_argument("--gibbs-steps", type=options.nonnegative_int, default=10, help="pseudo-Gibbs rounds before importance resampling")
    options.add_seed_arg(p)
    options.add_device_arg(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    run_ = options.open_run(args, alone="impute fills images in from their observed pixels alone")
    data = run_.data
    if len(data.x_shape) != 1:
        raise UsageError(f"impute fills in pixels of data stored as vectors [N, D], and this run's data points are "
                         f"{list(data.x_shape)}; it works on runs on the built-in data sets or on --data vectors.")
    x = data.x_test[plots.examples(data, args.n).to(data.device)]
    missing = impute.make_mask(args.mask, x.shape[0], data.image_shape, fraction=args.fraction, seed=args.seed,
                               device=data.device)
    result = impute.impute(run_.model, run_.guide, data, x, missing, particles=args.particles,
                           gibbs_steps=max(0, args.gibbs_steps))
    figure = os.path.join("figures", f"impute-{args.mask}.png")
    impute.draw(x, missing, result, data.image_shape, os.path.join(args.run_dir, figure))
    summary = {"mask": args.mask, "fraction": args.fraction if args.mask == "random" else None,
               "n": int(x.shape[0]), "particles": args.particles, "gibbs_steps": max(0, args.gibbs_steps),
               "seed": args.seed, "epoch": run_.epoch,
               **impute.errors(x, missing, result, data.x_train.mean(0)),
               "ess_median": result["ess"].median().item(), "figure": figure}
    path = os.path.join(args.run_dir, f"impute-{args.mask}.json")
    write_json(path, summary)
    print(f"{summary['n']} test images, {args.mask} mask: squared error per missing pixel "
          f"{summary['mse_importance']:.4f} (importance resampling, K = {args.particles}), "
          f"{summary['mse_pseudo_gibbs']:.4f} (pseudo-Gibbs alone), {summary['mse_train_mean']:.4f} "
          f"(training mean image); median ESS {summary['ess_median']:.0f}; wrote {path} and "
          f"{os.path.join(args.run_dir, figure)}")
    return 0
