# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 5. Autoencoder versus VAE: the latent space, and what decoding points of it generates
#
# Both models below have the same networks — a $D$-200-2 encoder and a 2-200-$D$ decoder with
# Bernoulli pixels — and see the same mini-batches. They differ only in what they are trained for:
#
# - the **autoencoder** minimizes the reconstruction loss $-\log p(x \mid z = f(x))$ alone. Nothing
#   asks its codes to lie anywhere in particular, so they spread over an arbitrary, uneven region, and
#   there is no distribution to draw new codes from;
# - the **VAE** maximizes $\mathcal L(\theta, \phi) = \mathbb E_q[\log p(x \mid z)] -
#   \mathrm{KL}(q(z \mid x) \,\Vert\, p(z))$ (Kingma & Welling 2014): the KL pulls every $q(z \mid x)$
#   toward $p(z) = \mathcal N(0, I)$, so the codes fill the prior's region and decoded draws
#   $z \sim p(z)$ cover every kind of image.
#
# A 2-dimensional latent space lets us look at it directly. The notebook runs on Fashion-MNIST when
# its files are in `DATA_DIR` (torchvision's layout, `FashionMNIST/raw/`), else on the bundled 8×8
# digits. The VAE is the library's (`ppl_vae.models.vae.VAE`, `ppl_vae.guides.gaussian.DiagonalGaussian`,
# trained by `ppl_vae.fit`); the autoencoder is a plain PyTorch loop over the same mini-batches
# (`ppl_vae.data.batches`). This notebook is also what `scripts/teach/ae_vs_vae.py` runs.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import pyro
import torch
import torch.nn.functional as F

import ppl_vae
from ppl_vae.evaluation import latents
from ppl_vae.guides.gaussian import DiagonalGaussian
from ppl_vae.models.mlp import mlp
from ppl_vae.models.vae import VAE
from ppl_vae.viz.figures import mosaic, show_mosaic

FAST = os.environ.get("PPL_VAE_NOTEBOOK_FAST") == "1"  # the test suite's quick run
DATASET = "fashion-mnist"   # used when its files are in DATA_DIR; else the digits
DATA_DIR = "../../shared/data"   # from notebooks/: the shared data folder beside the repository
EPOCHS = 5 if FAST else 150      # on the digits (1500 images); a 60 000-image set gets EPOCHS // 30
GRID = 12                        # decoded points per side of the generation grid
LATENT, HIDDEN = 2, 200

try:
    data = ppl_vae.data.load("digits" if FAST else DATASET, data_dir=DATA_DIR, binarize="dynamic")
except ppl_vae.UsageError as e:  # the files are not there: the bundled digits instead
    print(f"{DATASET}: {e} Using the digits.")
    data = ppl_vae.data.load("digits", binarize="dynamic")
epochs = EPOCHS if data.x_train.shape[0] < 10_000 else max(1, EPOCHS // 30)
CLASSES = (["T-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
           if data.name == "fashion-mnist" else [str(d) for d in range(10)])
print(data.name, tuple(data.x_train.shape), tuple(data.x_test.shape), f"{epochs} epochs")

# %% [markdown]
# ## Training both
#
# The autoencoder takes Adam steps on the binary cross-entropy of its reconstructions, on the
# mini-batches `ppl_vae.fit` uses (`data.train_epoch` redraws the binary pixels every epoch,
# `ppl_vae.data.batches` shuffles). The VAE is the library's, with the same layer sizes.

# %%
def train_autoencoder(data, epochs, seed=0, lr=1e-3, batch_size=100):
    """A deterministic autoencoder z = f(x), trained on −log p(x | z) with Adam, the same batches as fit()."""
    torch.manual_seed(seed)
    encoder, decoder = mlp([data.x_dim, HIDDEN, LATENT]), mlp([LATENT, HIDDEN, data.x_dim])
    opt = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=lr)
    for epoch in range(epochs):
        x_epoch = data.train_epoch(epoch)
        g = ppl_vae.data.epoch_generator(seed, epoch, data.device, "permute")
        for idx in ppl_vae.data.batches(x_epoch.shape[0], batch_size, g, device=data.device):
            x = x_epoch[idx]
            loss = F.binary_cross_entropy_with_logits(decoder(encoder(x)), x, reduction="sum") / x.shape[0]
            opt.zero_grad()
            loss.backward()
            opt.step()
    return encoder.eval(), decoder.eval()


encoder, decoder = train_autoencoder(data, epochs)
pyro.set_rng_seed(0)
vae, guide = VAE(data.x_dim, LATENT, [HIDDEN]), DiagonalGaussian(data.x_dim, LATENT, [HIDDEN])
history = ppl_vae.fit(vae, guide, data, "elbo", epochs=epochs, device="cpu", progress=False)
vae.eval(), guide.eval()
print(f"VAE after {epochs} epochs: test ELBO {history[-1]['test_bound']:.2f} nats per image")

x, y = data.x_test, data.y_test.numpy()
with torch.no_grad():
    ae_codes = encoder(x).numpy()
vae_codes = latents.posterior_means(guide, x).numpy()

# %% [markdown]
# ## The latent spaces
#
# **The figure** shows each test image's code, coloured by its class: for the autoencoder $z = f(x)$,
# for the VAE the posterior mean $\mathbb E_q[z \mid x]$, over the prior's 1σ and 2σ circles (where
# $\mathcal N(0, I)$ puts 39% and 86% of its mass). The autoencoder's codes sit wherever training left
# them — look at the axes' ranges — while the VAE's fill the prior's disc, classes side by side.
# **Try:** `LATENT = 8` and look at two of the coordinates, fewer `EPOCHS`, or weaken the KL's pull
# by training the VAE on `"iwae"` with `particles=20`.

# %%
def scatter(ax, codes, title):
    points = ax.scatter(codes[:, 0], codes[:, 1], c=y, cmap="tab10", vmin=-0.5, vmax=9.5, s=8, alpha=0.8)
    ax.set(title=title, xlabel="z₁", ylabel="z₂")
    return points


fig, axes = plt.subplots(1, 2, figsize=(12, 5.4))
scatter(axes[0], ae_codes, "autoencoder: codes z = f(x)")
points = scatter(axes[1], vae_codes, "VAE: posterior means E_q[z | x]")
theta = np.linspace(0, 2 * np.pi, 200)
for r in (1, 2):
    axes[1].plot(r * np.cos(theta), r * np.sin(theta), "k--", lw=0.8)
handles, _ = points.legend_elements()
axes[1].legend(handles, CLASSES, title="label", loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
fig.suptitle(f"{len(y)} test images in a 2-D latent space (dashed: 1 and 2 prior standard deviations)")
fig.tight_layout()
plt.show()
print(f"autoencoder codes: z₁ from {ae_codes[:, 0].min():.1f} to {ae_codes[:, 0].max():.1f}, "
      f"z₂ from {ae_codes[:, 1].min():.1f} to {ae_codes[:, 1].max():.1f}; VAE means: z₁ from "
      f"{vae_codes[:, 0].min():.1f} to {vae_codes[:, 0].max():.1f}")

# %% [markdown]
# ## Generation on a grid
#
# Decode a regular $n \times n$ grid spanning each model's own codes (their bounding box). **The
# figure:** both decoders vary smoothly between classes across their boxes — but only for the VAE is
# the box where a known distribution puts its mass; for the autoencoder, parts of the box hold no
# code at all, and nothing says which. **Try:** a grid over $[-3, 3]^2$ for both (the autoencoder's
# corners decode to whatever), or `GRID = 20`.

# %%
def box_grid(codes, n):
    """n × n points spanning the bounding box of ``codes`` (rows from top to bottom)."""
    lo, hi = codes.min(0), codes.max(0)
    xs, ys = np.linspace(lo[0], hi[0], n), np.linspace(hi[1], lo[1], n)
    return np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2), (lo, hi)


models = {"autoencoder": (ae_codes, lambda z: torch.sigmoid(decoder(z))),
          "VAE": (vae_codes, lambda z: latents.decode(vae, z, data.x_dim))}
fig, axes = plt.subplots(1, 2, figsize=(12, 6.6))
for ax, (name, (codes, decode)) in zip(axes, models.items()):
    grid, (lo, hi) = box_grid(codes, GRID)
    with torch.no_grad():
        images = decode(torch.tensor(grid, dtype=torch.float32)).reshape(GRID, GRID, -1).numpy()
    show_mosaic(ax, mosaic(images, data.image_shape),
                title=f"{name}: decoded {GRID}×{GRID} grid over its codes' box\n"
                      f"z₁ ∈ [{lo[0]:.1f}, {hi[0]:.1f}], z₂ ∈ [{lo[1]:.1f}, {hi[1]:.1f}]")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Generation from the prior
#
# The generative test: decode 100 draws $z \sim \mathcal N(0, I)$ with each decoder, and label each
# draw by the class of the test code nearest to it. **The figure:** the autoencoder's draws crowd onto
# the classes whose codes happen to lie near the origin; the VAE's spread over the classes, since its
# codes fill the prior. **Try:** draws from a wider prior, `torch.randn(...) * 3`, for the VAE (it
# leaves the region it was trained on), or another seed.

# %%
z = torch.randn(100, LATENT, generator=torch.Generator().manual_seed(0))
fig, axes = plt.subplots(1, 2, figsize=(12, 6.9))
covered = {}
for ax, (name, (codes, decode)) in zip(axes, models.items()):
    with torch.no_grad():
        images = decode(z).reshape(10, 10, -1).numpy()
    nearest = y[np.argmin(((z.numpy()[:, None] - codes[None]) ** 2).sum(-1), 1)]
    covered[name] = np.bincount(nearest, minlength=10)
    show_mosaic(ax, mosaic(images, data.image_shape),
                title=f"{name}: decoded draws z ~ N(0, I)\nnearest test code's label: "
                      f"{(covered[name] > 0).sum()} of 10 classes, most common {covered[name].max()} of 100")
fig.tight_layout()
plt.show()
for name, counts in covered.items():
    print(f"  {name}: labels of the test codes nearest to 100 draws from N(0, I), classes 0-9: {counts.tolist()}")
ae, v = covered["autoencoder"], covered["VAE"]
print(f"most common: {CLASSES[ae.argmax()]} ({ae.max()} of 100) for the autoencoder, "
      f"{CLASSES[v.argmax()]} ({v.max()} of 100) for the VAE")
