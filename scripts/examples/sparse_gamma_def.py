"""A sparse gamma deep exponential family (Ranganath, Tang, Charlin & Blei 2015) written the way
Pyro's ``examples/sparse_gamma_def.py`` writes it, trained by ppl-vae as it stands:

    w_l ~ Gamma(α_w, β_w)  (global weights of three layers),
    z_top ~ Gamma(α_z, β_z),  z_l | z_{l+1} ~ Gamma(α_z, α_z / (z_{l+1} w_{l+1})),  x | z_bottom ~ Poisson(z_bottom w_bottom),

with a mean-field guide of per-point and global Gamma parameters (``pyro.param`` sites, no
networks: a non-amortized guide). The constructs are the example's: global latents in plates of
their own outside the ``data`` plate, local parameters sized by the data set (``x.size(0)``),
the full data set at every step (no subsampling), ``TraceMeanField_ELBO`` (``elbo-analytic``),
Pyro's ``AdagradRMSProp`` and a hook after every step that clamps the parameters
(``clip_params``, ``Pair(after_step=...)``). As in the example, the bound is reported on the
training images (the per-point parameters are theirs): the test split is the training set.

The images are the bundled digits' grey levels as counts 0…16 (the example's faces are not
downloadable here).

    python scripts/examples/sparse_gamma_def.py --epochs 300
"""

from __future__ import annotations

import argparse

import pyro
import torch
from pyro.distributions import Gamma, Poisson
from torch.nn.functional import softplus

from ppl_vae import Dataset, Pair, fit
from ppl_vae import data as datasets


def rand_tensor(shape, mean, sigma):
    return mean * torch.ones(shape) + sigma * torch.randn(shape)


class SparseGammaDEF:
    def __init__(self, image_size: int, top_width: int = 6, mid_width: int = 4, bottom_width: int = 3):
        self.top_width, self.mid_width, self.bottom_width = top_width, mid_width, bottom_width
        self.image_size = image_size
        self.alpha_z, self.beta_z = torch.tensor(0.1), torch.tensor(0.1)
        self.alpha_w, self.beta_w = torch.tensor(0.1), torch.tensor(0.3)
        self.alpha_init, self.mean_init, self.sigma_init = 0.5, 0.0, 0.1

    def weights(self, w, rows: int, cols: int):
        return w.reshape(rows, cols) if w.dim() == 1 else w.reshape(-1, rows, cols)

    def model(self, x):
        x_size = x.size(0)
        with pyro.plate("w_top_plate", self.top_width * self.mid_width):
            w_top = pyro.sample("w_top", Gamma(self.alpha_w, self.beta_w))
        with pyro.plate("w_mid_plate", self.mid_width * self.bottom_width):
            w_mid = pyro.sample("w_mid", Gamma(self.alpha_w, self.beta_w))
        with pyro.plate("w_bottom_plate", self.bottom_width * self.image_size):
            w_bottom = pyro.sample("w_bottom", Gamma(self.alpha_w, self.beta_w))
        with pyro.plate("data", x_size):
            z_top = pyro.sample("z_top", Gamma(self.alpha_z, self.beta_z).expand([self.top_width]).to_event(1))
            mean_mid = torch.matmul(z_top, self.weights(w_top, self.top_width, self.mid_width))
            z_mid = pyro.sample("z_mid", Gamma(self.alpha_z, self.beta_z / mean_mid).to_event(1))
            mean_bottom = torch.matmul(z_mid, self.weights(w_mid, self.mid_width, self.bottom_width))
            z_bottom = pyro.sample("z_bottom", Gamma(self.alpha_z, self.beta_z / mean_bottom).to_event(1))
            mean_obs = torch.matmul(z_bottom, self.weights(w_bottom, self.bottom_width, self.image_size))
            pyro.sample("obs", Poisson(mean_obs).to_event(1), obs=x)

    def guide(self, x):
        x_size = x.size(0)

        def sample_zs(name, width):
            alpha = pyro.param(f"alpha_z_q_{name}", lambda: rand_tensor((x_size, width), self.alpha_init, self.sigma_init))
            mean = pyro.param(f"mean_z_q_{name}", lambda: rand_tensor((x_size, width), self.mean_init, self.sigma_init))
            alpha, mean = softplus(alpha), softplus(mean)
            pyro.sample(f"z_{name}", Gamma(alpha, alpha / mean).to_event(1))

        def sample_ws(name, width):
            alpha = pyro.param(f"alpha_w_q_{name}", lambda: rand_tensor((width,), self.alpha_init, self.sigma_init))
            mean = pyro.param(f"mean_w_q_{name}", lambda: rand_tensor((width,), self.mean_init, self.sigma_init))
            alpha, mean = softplus(alpha), softplus(mean)
            pyro.sample(f"w_{name}", Gamma(alpha, alpha / mean))

        with pyro.plate("w_top_plate", self.top_width * self.mid_width):
            sample_ws("top", self.top_width * self.mid_width)
        with pyro.plate("w_mid_plate", self.mid_width * self.bottom_width):
            sample_ws("mid", self.mid_width * self.bottom_width)
        with pyro.plate("w_bottom_plate", self.bottom_width * self.image_size):
            sample_ws("bottom", self.bottom_width * self.image_size)
        with pyro.plate("data", x_size):
            sample_zs("top", self.top_width)
            sample_zs("mid", self.mid_width)
            sample_zs("bottom", self.bottom_width)


def clip_params():
    for param, clip in zip(("alpha", "mean"), (-2.5, -4.5)):
        for layer in ["_q_top", "_q_mid", "_q_bottom"]:
            for wz in ["_w", "_z"]:
                pyro.param(param + wz + layer).data.clamp_(min=clip)


def make_pair(data):
    sparse_gamma_def = SparseGammaDEF(data.x_dim)
    return Pair(sparse_gamma_def.model, sparse_gamma_def.guide, after_step=clip_params)


def counts(n: int) -> torch.Tensor:
    """n of the bundled digits as counts 0…16 per pixel [n, 64]."""
    return torch.round(datasets.load("digits", binarize="none").x_train[:n] * 16)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description="Pyro's sparse gamma DEF on the digits' counts")
    p.add_argument("--epochs", type=int, default=300, help="steps: one step per epoch on the whole data set")
    p.add_argument("--n", type=int, default=200, help="images")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    x = counts(args.n)
    history = fit(make_pair, Dataset.from_tensors(x, x), "elbo-analytic", epochs=args.epochs, batch_size=args.n,
                  optimizer="AdagradRMSProp", optim_args={"eta": 4.5, "t": 0.1}, seed=args.seed, device="cpu")
    result = {k: history[-1][k] for k in ("train_bound", "test_bound")}
    print(result)
    return result


if __name__ == "__main__":
    main()
