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
# # 7. Variational EM versus amortized inference, and outliers
#
# A VAE's guide is *amortized*: one encoder network maps every $x$ to its $q_\phi(z \mid x)$. The
# older alternative keeps one variational distribution per data point, $q_i(z) = \mathcal N(m_i,
# \mathrm{diag}\, s_i^2)$, a table with a row per training image, and trains it by **variational EM**:
# for each mini-batch, a few steps on its rows with $\theta$ fixed (E), then one step on $\theta$ (M).
#
# What each buys:
#
# - the table can fit each $q_i$ as well as the family allows — no *amortization gap* — but a row
#   improves only when its image comes round again, and a new image has no $q$ until an optimization
#   is run for it;
# - the encoder improves every $q$ at every step from what the images share, and gives a new image
#   its $q$ in one forward pass — at the price of the amortization gap, the distance between its $q$
#   and the best $q^*$ of its family (Cremer, Li & Duvenaud 2018).
#
# Library pieces: `ppl_vae.fit(..., schedule="vem", e_steps=N)`, the table guide
# `ppl_vae.guides.local.LocalGaussian`, the encoder `ppl_vae.guides.gaussian.DiagonalGaussian`,
# `ppl_vae.evaluation.gaps.gaps` (the approximation and amortization gaps) and, last,
# `ppl_vae.evaluation.outliers.detect` (is an image like the training data?).

# %%
import os
import time

import matplotlib.pyplot as plt
import pyro
import torch

import ppl_vae
from ppl_vae.evaluation import outliers
from ppl_vae.evaluation.gaps import gaps
from ppl_vae.guides.gaussian import DiagonalGaussian
from ppl_vae.guides.local import LocalGaussian
from ppl_vae.inference.objectives import make
from ppl_vae.models.vae import VAE

FAST = os.environ.get("PPL_VAE_NOTEBOOK_FAST") == "1"  # the test suite's quick run
DATASET = "digits"       # "mnist" needs the files in DATA_DIR (see docs/tour/03-training-options.md)
DATA_DIR = "../data"
EPOCHS = 3 if FAST else 100
E_STEPS = 5                       # E-steps per M-step of variational EM
LATENT, HIDDEN = 8, 200
TEST_POINTS = 20 if FAST else 100  # test images for the gaps (each refined by an optimization)
PARTICLES = 100 if FAST else 1000  # draws of q in each bound
OOD_POINTS = 100 if FAST else 297  # test images, and as many outliers, in the outlier section

data = ppl_vae.data.load(DATASET, data_dir=DATA_DIR)  # binary pixels, redrawn every epoch
# the training images alone: a table guide has no q for test images, so no test bound each epoch
train_only = ppl_vae.Dataset.from_tensors(data.x_train, binarize="dynamic", image_shape=data.image_shape)
x_test = data.x_test[:TEST_POINTS]
print(data.name, tuple(data.x_train.shape), tuple(data.x_test.shape))

# %% [markdown]
# ## Three ways to train the same model
#
# The same decoder (8-dimensional latent, 200 hidden units, Bernoulli pixels, the same initial
# weights), trained on the ELBO for the same epochs: with an encoder (joint SVI), with a table by
# joint SVI (one step on rows and $\theta$ together), and with a table by variational EM
# ($E$ = `E_STEPS` steps on the rows per step on $\theta$). The table's rows get sparse gradients and
# train at 50× the learning rate, since each is stepped once per epoch (see the tour's section 9).
#
# **The figure** shows the training bound per epoch (the ELBO under each run's own $q$ of the
# training images) and the seconds each run took. **Try:** `E_STEPS = 1` or `20`, fewer `EPOCHS`
# (which method is ahead early?), or `schedule="vem"` for the encoder run too (He et al. 2019's
# "aggressive" encoder updates).

# %%
def new_model():
    pyro.set_rng_seed(0)  # the same initial decoder for every run
    return VAE(data.x_dim, LATENT, [HIDDEN])


n_train = data.x_train.shape[0]
runs = {"encoder, joint SVI": (new_model(), DiagonalGaussian(data.x_dim, LATENT, [HIDDEN]), {}),
        "table, joint SVI": (new_model(), LocalGaussian(n_train, LATENT), {}),
        f"table, variational EM ({E_STEPS} E-steps)": (new_model(), LocalGaussian(n_train, LATENT),
                                                        {"schedule": "vem", "e_steps": E_STEPS})}
histories, seconds = {}, {}
for name, (model, guide, options) in runs.items():
    start = time.perf_counter()
    histories[name] = ppl_vae.fit(model, guide, train_only, "elbo", epochs=EPOCHS, progress=False, **options)
    seconds[name] = time.perf_counter() - start

fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [2, 1]})
for name, history in histories.items():
    left.plot([h["epoch"] for h in history], [h["train_bound"] for h in history], label=name)
left.set(xlabel="epoch", ylabel="training ELBO (nats per image)", title="training bound under each run's own q",
         ylim=(histories["encoder, joint SVI"][-1]["train_bound"] - 8, None))
left.grid(alpha=0.3)
left.legend()
right.barh(list(seconds), list(seconds.values()), color=["C0", "C1", "C2"])
right.set(xlabel="seconds (training only)", title=f"{EPOCHS} epochs")
right.invert_yaxis()
plt.tight_layout()
plt.show()
for name, history in histories.items():
    print(f"{name}: training ELBO {history[-1]['train_bound']:.2f} after {EPOCHS} epochs, {seconds[name]:.1f} s")

# %% [markdown]
# ## New images: an optimization per point, or one forward pass
#
# On `TEST_POINTS` test images, with each trained decoder fixed:
#
# - the **encoder run**: `gaps` refines, per image, a $q^*$ of the encoder's own family (diagonal
#   Gaussian) from the encoder's output until its ELBO converges, and splits the distance from the
#   encoder's bound $\mathcal L[q]$ to $\log p(x)$ into the *approximation gap*
#   $\log p(x) - \mathcal L[q^*]$ (the family's) and the *amortization gap* $\mathcal L[q^*] - \mathcal L[q]$
#   (the encoder's);
# - the **table runs**: a fresh table for the test images, refined from the prior with $\theta$ fixed
#   (the E-step run to convergence, `LocalGaussian.test_bound`) — their only way to get a $q$.
#
# **The figure:** each run's test bound, with the encoder's $\mathcal L[q]$, $\mathcal L[q^*]$ and
# $\log p(x)$, and the seconds it took to get the $q$ of the test images. **Try:** more `EPOCHS`
# (does the amortization gap shrink as the encoder trains?) or `LATENT = 2`.

# %%
encoder_model, encoder, _ = runs["encoder, joint SVI"]
start = time.perf_counter()
with torch.no_grad():
    encoder_bound = make("elbo", particles=PARTICLES).test_bound(encoder_model.model, encoder.guide, x_test)
encoder_seconds = time.perf_counter() - start
start = time.perf_counter()
split = gaps(encoder_model, encoder, x_test, particles=PARTICLES)
refine_seconds = time.perf_counter() - start
print(f"encoder: L[q] {split['elbo_q']:.2f}, L[q*] {split['elbo_q_star']:.2f}, log p(x) {split['log_px']:.2f}; "
      f"approximation gap {split['approximation_gap']:.3f} ± {split['approximation_gap_se']:.3f}, "
      f"amortization gap {split['amortization_gap']:.3f} ± {split['amortization_gap_se']:.3f} nats")

table_bounds, table_seconds = {}, {}
for name, (model, guide, _) in list(runs.items())[1:]:
    start = time.perf_counter()
    table_bounds[name] = guide.test_bound(make("elbo", particles=PARTICLES), model.model, x_test).mean().item()
    table_seconds[name] = time.perf_counter() - start
    print(f"{name}: test ELBO under q refitted per image {table_bounds[name]:.2f} ({table_seconds[name]:.1f} s)")

bars = {"encoder: L[q]": (split["elbo_q"], encoder_seconds),
        "encoder: L[q*], refined": (split["elbo_q_star"], refine_seconds),
        **{f"{name}: L[q refitted]": (table_bounds[name], table_seconds[name]) for name in table_bounds}}
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
left.scatter([v for v, _ in bars.values()], list(bars), c=["C0", "C0", "C1", "C2"], s=80, zorder=3)
left.axvline(split["log_px"], color="k", ls="--", lw=1, label=f"encoder run's log p(x) ≈ {split['log_px']:.2f}")
low = min(v for v, _ in bars.values())
left.set(xlim=(low - 0.5, split["log_px"] + 0.5), xlabel=f"nats per test image ({TEST_POINTS} images)",
         title="test bounds")
left.grid(alpha=0.3)
left.invert_yaxis()
left.legend(loc="lower right", fontsize=8)
right.barh(list(bars), [s for _, s in bars.values()], color=["C0", "C0", "C1", "C2"])
right.set(xscale="log", xlabel="seconds to get q for the test images (log)", title="the cost of a q", yticks=[])
right.invert_yaxis()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Outliers: is an image like the training data?
#
# A trained VAE scores an image two ways (`outliers.scores`): the KL of its $q(z \mid x)$ from the prior
# (an unusual image lands far from where the prior has mass) and its negative log-likelihood
# $-\log \hat p(x)$. `outliers.detect` scores the test images and as many out-of-distribution ones, and
# gives each score's AUROC (0.5: chance, 1: perfect). Here the outliers are the test images upside
# down — the same pixels' statistics, the wrong shapes — and pixel noise of the same mean grey level.
#
# Look at the printed AUROCs before believing the lecture's KL score: the likelihood separates noise
# perfectly, but the KL can come out *below* 0.5 — ranking the outliers as more typical than the
# test images — because an image with no digit's structure gives the encoder little to encode, and
# its $q$ stays near the prior (a small KL). Flipped digits are harder for both scores.
#
# **The figure** shows the histograms of both scores for the test images and the flipped ones, for
# the encoder run. **Try:** `"noise"` in the histograms, or `"mnist"` (area-averaged to 8×8) when its
# files are in `DATA_DIR`.

# %%
detections = {}
for ood in ("flipped", "noise"):
    pyro.set_rng_seed(0)
    detections[ood] = outliers.detect(encoder_model, encoder, data, ood, n=OOD_POINTS,
                                      particles=PARTICLES // 10, data_dir=DATA_DIR)
    result = detections[ood][0]
    print(f"{ood}: AUROC of the KL {result['auroc_kl']:.3f}, of −log p̂(x) {result['auroc_nll']:.3f} "
          f"({result['n_in']} test images against {result['n_out']} {ood})")

_, _, raw = detections["flipped"]
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
for ax, key in zip(axes, ("kl", "nll")):
    ax.hist(raw["in"][key].cpu().numpy(), bins=30, alpha=0.6, label="test images")
    ax.hist(raw["out"][key].cpu().numpy(), bins=30, alpha=0.6, label="flipped test images")
    ax.set(xlabel=outliers.SCORE_LABELS[key], ylabel="images",
           title=f"AUROC {detections['flipped'][0]['auroc_' + key]:.3f}")
    ax.legend()
plt.tight_layout()
plt.show()
