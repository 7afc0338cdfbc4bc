"""``ppl-vae baselines``: PPCA, GMM and the VAE fit by the same code and scored on one table."""

from __future__ import annotations

import argparse
import os

from ppl_vae import data

from ppl_vae.classical import baselines
from ppl_vae.cli import options
from ppl_vae.io.rundir import writable_dir


def add_parser(sub) -> None:
    p = sub.add_parser("baselines", help="PPCA, GMM and VAE test log-likelihoods on one table",
                       description="Fit PPCA (closed form, EM, SVI), Gaussian mixtures (EM, SVI) and the Gaussian "
                                   "VAE on dequantized grey levels, and the Bernoulli VAE on binarized pixels, each "
                                   "as a `ppl-vae train` run under OUT/runs; writes OUT/baselines.csv and "
                                   "OUT/baselines.md with the test log-likelihood (exact where the model has one, "
                                   "importance-sampled otherwise), bits per dimension and time to fit.")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--dataset", default="digits", choices=data.DATASETS, help="digits needs no files or network")
    p.add_argument("--data-dir", default="data", help="folder holding the torchvision datasets")
    p.add_argument("--latent-dim", type=options.positive_int, default=8, help="latent dimension of PPCA and the VAEs")
    p.add_argument("--components", type=options.positive_int, default=10, help="mixture components K")
    p.add_argument("--epochs", type=options.positive_int, default=100, help="SVI epochs; the most EM iterations")
    p.add_argument("--particles", "-k", type=options.positive_int, default=1000,
                   help="importance samples K for models without an exact log-likelihood")
    options.add_seed_arg(p)
    options.add_device_arg(p)
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bars")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    writable_dir(args.out)
    baselines.run(args.dataset, args.out, data_dir=args.data_dir, latent_dim=args.latent_dim,
                  components=args.components, epochs=args.epochs, particles=args.particles, seed=args.seed,
                  device=args.device, progress=args.progress)
    with open(os.path.join(args.out, "baselines.md")) as f:
        print(f.read())
    print(f"wrote {os.path.join(args.out, 'baselines.csv')} and baselines.md")
    return 0
