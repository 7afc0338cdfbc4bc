"""``ppl-vae outliers``: AUROC of KL(q(z|x) ‖ p(z)) and −log p̂(x) for test versus outlier images."""

from __future__ import annotations

import argparse
import os

from ppl_vae.evaluation import outliers
from ppl_vae.io.rundir import write_json
from ppl_vae.cli import options


def add_parser(sub) -> None:
    p = sub.add_parser("outliers", help="outlier detection: AUROC of KL(q(z|x)‖p(z)) and −log p(x)",
                       description="Score test images and out-of-distribution images by KL(q(z|x) ‖ p(z)) and "
                                   "by the importance-sampled −log p(x); writes RUN_DIR/outliers-OOD.json and "
                                   "RUN_DIR/figures/outliers-OOD.png (examples and score histograms).")
    options.add_run_dir_arg(p)
    p.add_argument("--ood", required=True, choices=outliers.OOD, help="the out-of-distribution images")
    p.add_argument("--n", type=options.positive_int, default=1000, help="images of each set (at most the test set)")
    p.add_argument("--particles", "-k", type=options.positive_int, default=100,
                   help="importance samples K for −log p(x)")
    p.add_argument("--data-dir", default=None,
                   help="folder holding mnist / fashion-mnist (default: the run's --data-dir)")
    p.add_argument("--download", action="store_true", help="download the --ood dataset if it is missing")
    options.add_seed_arg(p)
    options.add_device_arg(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    run_ = options.open_run(args, alone="outliers scores out-of-distribution images, which come without labels")
    data_dir = args.data_dir or run_.config.data.data_dir
    results, x_out, raw = outliers.detect(run_.model, run_.guide, run_.data, args.ood, n=args.n,
                                          particles=args.particles, data_dir=data_dir, download=args.download,
                                          seed=args.seed)
    figure = os.path.join("figures", f"outliers-{args.ood}.png")
    outliers.histograms(results, raw, run_.data.x_test, x_out, run_.data.image_shape,
                        os.path.join(args.run_dir, figure))
    results.update(figure=figure, epoch=run_.epoch)
    path = os.path.join(args.run_dir, f"outliers-{args.ood}.json")
    write_json(path, results)
    print(f"{results['n_in']} {results['dataset']} test images against {results['n_out']} {args.ood} images: "
          f"AUROC {results['auroc_kl']:.3f} for KL(q(z|x) ‖ p(z)), {results['auroc_nll']:.3f} for −log p(x) "
          f"(K = {args.particles}); wrote {path} and {os.path.join(args.run_dir, figure)}")
    return 0
