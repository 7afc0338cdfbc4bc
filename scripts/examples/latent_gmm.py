"""Cluster a trained VAE's latent codes with a Gaussian mixture fit by EM.

The codes are the encoder means μ_φ(x) of the training images; ``models.gmm.fit_codes`` fits
K components by EM from k-means++ seeds. The script prints the codes' log-likelihood under the
mixture and how much the MAP clusters (Pyro's ``infer_discrete``) tell about the digit labels
(normalized mutual information: 0 for chance, 1 when clusters are the digits). For a 2-D latent
space it draws the codes coloured by cluster, with each component's 2σ ellipse, to
RUN_DIR/latent_gmm.png.

    ppl-vae train --out runs/z2 --latent-dim 2
    python scripts/examples/latent_gmm.py runs/z2 --components 10
"""

import argparse
import os

import numpy as np
import torch
from sklearn.metrics import normalized_mutual_info_score

from ppl_vae.models.gmm import fit_codes
from ppl_vae.viz import figures
from ppl_vae.run import load as load_run

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("run_dir", metavar="RUN_DIR")
parser.add_argument("--components", type=int, default=10)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

run = load_run(args.run_dir, "cpu")
with torch.no_grad():
    codes = run.guide.dist(run.data.x_train).mean
gmm = fit_codes(codes, args.components, seed=args.seed)
clusters = gmm.map_assignments(codes)
with torch.no_grad():
    loglik = gmm.log_marginal(codes).mean().item()
nmi = normalized_mutual_info_score(run.data.y_train.cpu().numpy(), clusters.numpy())
print(f"GMM with K = {args.components} on {codes.shape[0]} codes of dimension {codes.shape[1]}: "
      f"log-likelihood {loglik:.2f} nats per code, NMI with the digit labels {nmi:.2f}")

if codes.shape[1] == 2:
    fig, ax = figures.figure(7, 5)
    points = ax.scatter(*codes.T.numpy(), c=clusters.numpy(), cmap="tab10", s=4, vmin=-0.5, vmax=9.5)
    handles, names = points.legend_elements()
    ax.legend(handles, [f"cluster {n}" for n in names], loc="center left", bbox_to_anchor=(1.01, 0.5),
              frameon=False, fontsize=8)
    angles = np.linspace(0, 2 * np.pi, 100)
    circle = 2 * np.stack([np.cos(angles), np.sin(angles)])  # 2σ of N(0, I)
    for mean, L in zip(gmm.means.detach().numpy(), gmm.scale_tril().detach().numpy()):
        ax.plot(*(mean[:, None] + L @ circle), color="black", lw=1)
    ax.set(xlabel="E_q[z₁ | x]", ylabel="E_q[z₂ | x]",
           title=f"VAE codes and a {args.components}-component GMM (2σ ellipses)")
    fig.tight_layout()
    print("wrote", figures.save(fig, os.path.join(args.run_dir, "latent_gmm.png")))
