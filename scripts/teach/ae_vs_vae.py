"""Autoencoder versus VAE: the 2-D latent space, and what decoding points of it generates.

A thin command-line wrapper: it runs notebooks/05_ae_vs_vae.py (the demonstration's home; see
scripts/teach/_notebook.py) with the options below as the notebook's flags, and writes its figures
to --out. Both models have the same networks (D-200-2 encoder, 2-200-D decoder, Bernoulli pixels)
and see the same mini-batches.

- The autoencoder minimizes the reconstruction loss −log p(x | z = f(x)) alone: nothing asks
  its codes to lie in any particular region, so they spread over an arbitrary, uneven area
  with no distribution to draw new codes from.
- The VAE maximizes L(θ, φ) = E_q[log p(x | z)] − KL(q(z | x) ‖ p(z)) (Kingma & Welling
  2014): the KL pulls every q(z | x) toward p(z) = N(0, I), so the codes fill the prior's
  region and decoded draws z ~ p(z) cover every kind of digit.

Generation is compared two ways: the decoder over a regular grid spanning each model's own
codes, and the decoder at 100 draws z ~ N(0, I); the label of the nearest test code to each
draw says which digits those draws land on. ``--dataset fashion-mnist --data-dir ../shared/data``
runs it on Fashion-MNIST (the digits if its files are not there); a 60 000-image set trains
``--epochs`` // 30 epochs.

    python scripts/teach/ae_vs_vae.py [--epochs 150] [--out runs/teach/ae_vs_vae]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _notebook import run  # noqa: E402

from ppl_vae import data as datasets  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--grid", type=int, default=12, help="decoded points per side")
    parser.add_argument("--dataset", default="digits", choices=datasets.DATASETS)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--out", default="runs/teach/ae_vs_vae")
    args = parser.parse_args(argv)

    def most_common(ns, name):
        counts = ns["covered"][name]
        return f"label {ns['CLASSES'][counts.argmax()]}: {counts.max()} of 100"

    run("05_ae_vs_vae.py",
        {"EPOCHS": args.epochs, "GRID": args.grid, "DATASET": args.dataset, "DATA_DIR": args.data_dir},
        args.out,
        [("latent_spaces", lambda ns: "the test images' codes — the autoencoder's spread over an arbitrary region "
                                      f"(z₁ from {ns['ae_codes'][:, 0].min():.1f} to "
                                      f"{ns['ae_codes'][:, 0].max():.1f}), the VAE's filling the prior's."),
         ("generation", "each decoder on a regular grid spanning its own codes; both vary between classes, but only "
                        "the VAE's grid is where a known distribution puts its mass."),
         ("prior_draws", lambda ns: "100 draws z ~ N(0, I) decoded by each model — the autoencoder's crowd onto the "
                                    "classes whose codes happen to lie near the origin "
                                    f"({most_common(ns, 'autoencoder')}), the VAE's spread over the classes "
                                    f"(most common, {most_common(ns, 'VAE')}).")])


if __name__ == "__main__":
    main()
