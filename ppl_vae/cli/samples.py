"""``ppl-vae samples``: draw from a trained model and, with ``--c2st``, test the draws against the test images."""

from __future__ import annotations

import argparse
import os

import torch

from ppl_vae.evaluation.samples import compare_with_test, model_samples
from ppl_vae.io.rundir import write_json
from ppl_vae.pair import callables
from ppl_vae.viz import figures, plots
from ppl_vae.cli import options

GRID = 10  # the figure shows GRID × GRID samples


def add_parser(sub) -> None:
    p = sub.add_parser("samples", help="samples from a run's model, and a two-sample test against the test images",
                       description="Draw x ~ p(x) from the trained model, one per test image (latents from the "
                                   "prior, the observed site sampled), into RUN_DIR/samples.png; with --c2st, tell "
                                   "them from the test images by a classifier two-sample test (held-out accuracy, "
                                   "0.5 = indistinguishable) and by MMD², into RUN_DIR/samples.json.")
    options.add_run_dir_arg(p)
    p.add_argument("--c2st", action="store_true",
                   help="also run the classifier two-sample test and MMD² against the test images")
    options.add_seed_arg(p)
    options.add_device_arg(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    run_ = options.open_run(args)
    x, inputs = run_.data.x_test, run_.inputs()
    model, _ = callables(run_.model, run_.guide)
    if args.c2st:
        result, samples = compare_with_test(model, x, inputs, seed=args.seed)
    else:
        result, samples = None, model_samples(model, x, inputs)
    figure = os.path.join(args.run_dir, "samples.png")
    draw(samples, run_.data.image_shape, figure)
    if result is None:
        print(f"drew {samples.shape[0]} samples from the model; wrote {figure}")
        return 0
    result.update(epoch=run_.epoch, seed=args.seed, dataset=run_.config.data.dataset, figure="samples.png")
    path = os.path.join(args.run_dir, "samples.json")
    write_json(path, result)
    print(f"C2ST accuracy {result['c2st_accuracy']:.3f} ± {result['c2st_se']:.3f} (0.5: the classifier cannot tell "
          f"samples from test images), MMD² {result['mmd2']:.4f}, {result['n']} samples against {result['n']} test "
          f"images; wrote {path} and {figure}")
    return 0


def draw(samples: torch.Tensor, image_shape, path: str) -> str:
    n = min(GRID, int(samples.shape[0] ** 0.5))
    images = plots._grid(samples[:n * n], n, n)
    fig, ax = figures.figure(6.0, 6.4)
    figures.show_mosaic(ax, figures.mosaic(images, image_shape), title=f"{n * n} samples x ~ p(x) from the model")
    fig.tight_layout()
    return figures.save(fig, path)
