"""PCA as a linear autoencoder: gradient descent on the reconstruction error finds PCA's subspace.

A thin command-line wrapper: it runs the first cell and the last section ("PCA as a linear
autoencoder, by gradient descent") of notebooks/01_vae_and_ppca.py, the demonstration's home (see
scripts/teach/_notebook.py), with the options below as the notebook's flags, and writes its figures
to --out. A linear autoencoder x̂ = B A (x − μ) + μ with a q-dimensional code z = A (x − μ), trained
by gradient descent on the mean squared reconstruction error (1/N) Σ_n ‖x_n − x̂_n‖², has as its
global optimum any B A that projects onto the span of the top-q principal components U_q (Baldi &
Hornik 1989): its error tends to PCA's, the sum of the discarded eigenvalues of the data covariance,
and the principal angles between span(B) and span(U_q) tend to zero. B itself is not U_q: any
invertible mixing B R, R⁻¹ A gives the same reconstructions, so the columns of B need be neither
orthogonal nor ordered by variance. (The rest of the notebook is the probabilistic side: PPCA's exact
log p(x) and posterior, and a linear VAE trained by SVI reaching PCA's subspace.)

    python scripts/teach/pca_linear_ae.py [--components 4] [--steps 2000] [--out runs/teach/pca_linear_ae]
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
    parser.add_argument("--components", "-q", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2000, help="full-batch Adam steps")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--dataset", default="digits", choices=datasets.DATASETS)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--out", default="runs/teach/pca_linear_ae")
    args = parser.parse_args(argv)
    run("01_vae_and_ppca.py",
        {"AE_COMPONENTS": args.components, "AE_STEPS": args.steps, "AE_LR": args.lr, "DATASET": args.dataset,
         "DATA_DIR": args.data_dir},
        args.out,
        [("training", lambda ns: f"the linear autoencoder's error falls to PCA's ({ns['ae_errors'][-1]:.4f} vs "
                                 f"{ns['pca_error']:.4f}) and its decoder's span turns onto the top-{args.components} "
                                 f"principal subspace (smallest cosine {ns['ae_cosines'][-1]:.4f})."),
         ("bases", "the principal components, the decoder's columns as learned (mixtures of them, in no particular "
                   "order) and the same columns orthonormalized and rotated, which match the components.")],
        sections=("PCA as a linear autoencoder",))


if __name__ == "__main__":
    main()
