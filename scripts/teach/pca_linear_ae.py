"""PCA as a linear autoencoder: gradient descent on the reconstruction error finds PCA's subspace.

A linear autoencoder x̂ = B A (x − μ) + μ with a q-dimensional code z = A (x − μ), trained by
gradient descent on the mean squared reconstruction error (1/N) Σ_n ‖x_n − x̂_n‖², has as
its global optimum any B A that projects onto the span of the top-q principal components
U_q (Baldi & Hornik 1989): its error tends to PCA's, the sum of the discarded eigenvalues of
the data covariance, and the principal angles between span(B) and span(U_q) tend to zero.
B itself is not U_q: any invertible mixing B R, R⁻¹ A gives the same reconstructions, so the
columns of B need be neither orthogonal nor ordered by variance.

    python scripts/teach/pca_linear_ae.py [--components 4] [--steps 2000] [--out runs/teach/pca_linear_ae]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch

from ppl_vae import data as datasets
from ppl_vae.viz import figures


def principal_cosines(B: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
    """Cosines of the principal angles between span(B) and span(U) (U orthonormal), largest first."""
    Q, _ = torch.linalg.qr(B)
    return torch.linalg.svdvals(U.T @ Q)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--components", "-q", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2000, help="full-batch Adam steps")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--dataset", default="digits", choices=datasets.DATASETS)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--out", default="runs/teach/pca_linear_ae")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    data = datasets.load(args.dataset, data_dir=args.data_dir, binarize="none")
    x, q = data.x_train, args.components
    mu = x.mean(0)
    xc = x - mu

    # PCA: eigenvectors of the sample covariance; its optimal error is the discarded variance
    eigvals, eigvecs = torch.linalg.eigh(xc.T @ xc / x.shape[0])
    eigvals, eigvecs = eigvals.flip(0), eigvecs.flip(1)
    U = eigvecs[:, :q]
    pca_error = eigvals[q:].sum().item()

    torch.manual_seed(0)
    A = (0.01 * torch.randn(q, data.x_dim)).requires_grad_()
    B = (0.01 * torch.randn(data.x_dim, q)).requires_grad_()
    opt = torch.optim.Adam([A, B], lr=args.lr)
    history = []
    for step in range(args.steps):
        loss = (xc - xc @ A.T @ B.T).pow(2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step < 100 or step % 10 == 0 or step == args.steps - 1:
            history.append((step + 1, loss.item(), principal_cosines(B.detach(), U).min().item()))
    steps, errors, cosines = map(np.array, zip(*history))

    fig, (left, right) = figures.figure(11.0, 4.2, ncols=2)
    left.plot(steps, errors, label="linear autoencoder")
    left.axhline(pca_error, color="k", ls="--", lw=1, label=f"PCA, q = {q}: {pca_error:.3f}")
    left.set_xscale("log")
    left.set_xlabel("Adam step")
    left.set_ylabel("mean over images of ‖x − x̂‖²")
    left.set_title("reconstruction error")
    left.legend()
    right.plot(steps, 1 - cosines)
    right.set_yscale("log")
    right.set_xscale("log")
    right.set_xlabel("Adam step")
    right.set_ylabel("1 − cos(largest principal angle)")
    right.set_title("span(B) against the top-q principal subspace (floor: float32)")
    fig.tight_layout()
    training = figures.save(fig, os.path.join(args.out, "training.png"))

    # B's columns against U_q: as learned, then rotated onto U_q (orthogonal Procrustes)
    Bd = B.detach()
    Q, _ = torch.linalg.qr(Bd)
    u, _, vh = torch.linalg.svd(Q.T @ U)
    aligned = Q @ (u @ vh)
    rows = torch.stack([U.T, Bd.T / Bd.norm(dim=0)[:, None], aligned.T])            # [3, q, D]
    scale = rows.abs().amax(-1, keepdim=True)
    fig, ax = figures.figure(1.6 * q + 2.4, 5.0)
    images = (0.5 + 0.5 * rows / scale).numpy()
    c, h, w = data.image_shape
    ax.imshow(figures.mosaic(images, data.image_shape, fill=0.5), cmap="RdBu_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks([(i + 0.5) * (h + 1) - 1 for i in range(3)],
                  ["principal\ncomponents", "autoencoder B\n(as learned)", "B orthonormalized,\nrotated onto PCA"])
    ax.set_xticks([(j + 0.5) * (w + 1) - 1 for j in range(q)], [f"{j + 1}" for j in range(q)])
    ax.tick_params(length=0)
    ax.set_title("basis images (red +, blue −)")
    fig.tight_layout()
    bases = figures.save(fig, os.path.join(args.out, "bases.png"))

    print(f"wrote {training}: the linear autoencoder's error falls to PCA's ({errors[-1]:.4f} vs {pca_error:.4f}) "
          f"and its decoder's span turns onto the top-{q} principal subspace (smallest cosine {cosines[-1]:.4f}).")
    print(f"wrote {bases}: the principal components, the decoder's columns as learned (mixtures of them, "
          f"in no particular order) and the same columns orthonormalized and rotated, which match the components.")


if __name__ == "__main__":
    main()
