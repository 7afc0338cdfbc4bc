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
# # 1. The VAE as an infinite mixture, and PPCA as its linear case
#
# A VAE's marginal likelihood is a mixture with one component per point of the latent space,
#
# $$p_\theta(x) = \int p_\theta(x \mid z)\, p(z)\, dz, \qquad p(z) = \mathcal N(0, I).$$
#
# With a *linear* Gaussian decoder, $p(x \mid z) = \mathcal N(Wz + \mu, \sigma^2 I)$, this is
# probabilistic PCA (Tipping & Bishop 1999): the integral has a closed form,
# $p(x) = \mathcal N(\mu, WW^\top + \sigma^2 I)$, and so does the posterior $p(z \mid x)$. That makes
# PPCA the one VAE on which every approximation can be checked against the exact answer.
#
# This notebook uses only the library's public API: `ppl_vae.data.load`, `ppl_vae.fit`,
# `ppl_vae.evaluate`, the model `ppl_vae.models.ppca.PPCA` and the guide
# `ppl_vae.guides.linear.LinearGaussian`. Its first cell and last section are also what
# `scripts/teach/pca_linear_ae.py` runs.

# %%
import math
import os

import matplotlib.pyplot as plt
import numpy as np
import torch

import ppl_vae
from ppl_vae.guides.linear import LinearGaussian
from ppl_vae.models.ppca import PPCA
from ppl_vae.viz.figures import mosaic

FAST = os.environ.get("PPL_VAE_NOTEBOOK_FAST") == "1"  # the test suite's quick run
DATASET = "digits"       # "mnist" needs the files in DATA_DIR (see docs/tour/03-training-options.md)
DATA_DIR = "../data"
EPOCHS = 20 if FAST else 300  # SVI epochs of the linear VAE below
AE_COMPONENTS = 4             # code size q of the deterministic linear autoencoder (last section)
AE_STEPS = 200 if FAST else 2000  # its full-batch Adam steps
AE_LR = 0.01
torch.manual_seed(0)

data = ppl_vae.data.load(DATASET, data_dir=DATA_DIR, binarize="none")  # grey levels in [0, 1]
x_train, x_test = data.x_train.double(), data.x_test.double()
print(data.name, tuple(x_train.shape), tuple(x_test.shape))

# %% [markdown]
# ## The exact log-likelihood, and the mixture seen from the prior
#
# `PPCA.fit_closed_form` sets $(W, \mu, \sigma^2)$ to their maximum-likelihood values (an
# eigendecomposition); `log_marginal` is the exact $\log p(x)$. The mixture view says
# $p(x) = \mathbb E_{p(z)}[p(x \mid z)]$, so averaging $p(x \mid z_s)$ over $S$ draws from the prior
# estimates it without bias — but on the log scale the estimate falls short, and it needs very many
# draws, because few prior draws land where the posterior is.
#
# **The figure** shows $\log \frac1S \sum_s p(x \mid z_s)$ averaged over the test images against $S$,
# for a 2- and an 8-dimensional latent space, with the exact $\log p(x)$ dashed.
# **Try:** a larger latent dimension (the prior misses the posterior more often; the curve rises
# more slowly), or `x_train[:100]` for the fit.

# %%
def prior_sampling_estimate(ppca, x, draws, chunk=256):
    """log (1/S) Σ_s p(x | z_s), z_s ~ p(z): the mixture average, per test image."""
    terms = []
    for start in range(0, draws, chunk):
        z = torch.randn(min(chunk, draws - start), ppca.latent_dim, dtype=x.dtype)
        lik = torch.distributions.Normal(z @ ppca.W.T + ppca.mu, ppca.sigma)  # p(x | z) for each draw
        terms.append(lik.log_prob(x[:, None]).sum(-1))                        # [N, S]
    return torch.logsumexp(torch.cat(terms, 1), 1) - math.log(draws)


draw_counts = [1, 4, 16, 64, 256, 1024] + ([] if FAST else [4096, 16384])
fig, ax = plt.subplots(figsize=(7, 4.5))
exact_by_q = {}
with torch.no_grad():
    for q, color in ((2, "C0"), (8, "C1")):
        ppca = PPCA(data.x_dim, q).double().fit_closed_form(x_train)
        exact = ppca.log_marginal(x_test).mean().item()
        exact_by_q[q] = ppca
        estimates = [prior_sampling_estimate(ppca, x_test, s).mean().item() for s in draw_counts]
        ax.plot(draw_counts, estimates, "o-", color=color, label=f"q = {q}: prior sampling")
        ax.axhline(exact, color=color, ls="--", lw=1, label=f"q = {q}: exact log p(x) = {exact:.2f}")
        print(f"q = {q}: exact log p(x) = {exact:.3f}; prior sampling with S = {draw_counts[-1]}: {estimates[-1]:.3f}")
ax.set(xscale="log", xlabel="prior draws S", ylabel="nats per test image",
       title=f"log p(x) as an average over the mixture's components ({data.name})")
ax.legend()
plt.show()

# %% [markdown]
# ## The exact posterior
#
# For PPCA $p(z \mid x) = \mathcal N(Ax + b, \Sigma)$ with $\Sigma = \sigma^2 (W^\top W + \sigma^2 I)^{-1}$,
# the same covariance for every $x$ (`PPCA.posterior`). In 2-D we can draw it.
#
# **The figure, left:** the posterior means of the test images, coloured by digit class — the
# mixture components that explain each image — over the prior's 1σ and 2σ circles.
# **Right:** the exact posterior of three test images (1σ and 2σ ellipses), much narrower than the
# prior: the data pin $z$ down. **Try:** refitting on a single class (`x_train[data.y_train == 3]`),
# or multiplying `W` by 0.1 (a weaker decoder: wider posteriors, nearer the prior).

# %%
ppca2 = exact_by_q[2]
with torch.no_grad():
    post = ppca2.posterior(x_test)
means, cov = post.loc.numpy(), post.covariance_matrix[0].numpy()
theta = torch.linspace(0, 2 * math.pi, 200, dtype=torch.float64)
circle = torch.stack([theta.cos(), theta.sin()], 1)

fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.8))
sc = left.scatter(means[:, 0], means[:, 1], c=data.y_test.numpy(), cmap="tab10", s=10)
for r in (1, 2):
    left.plot(r * circle[:, 0], r * circle[:, 1], "k--", lw=0.8)
left.set(aspect="equal", xlabel="z₁", ylabel="z₂", title="E[z | x] of the test images, prior's 1σ/2σ")
fig.colorbar(sc, ax=left, label="digit")
chol = torch.linalg.cholesky(torch.as_tensor(cov))
for i, color in zip((0, 1, 2), ("C3", "C2", "C4")):
    for r in (1, 2):
        ellipse = means[i] + (r * circle @ chol.T).numpy()
        right.plot(ellipse[:, 0], ellipse[:, 1], color=color, lw=1.5 if r == 1 else 0.8,
                   label=f"p(z | x) of test image {i} (digit {int(data.y_test[i])})" if r == 1 else None)
for r in (1, 2):
    right.plot(r * circle[:, 0], r * circle[:, 1], "k--", lw=0.8, label="prior 1σ, 2σ" if r == 1 else None)
right.set(aspect="equal", xlabel="z₁", ylabel="z₂", title="exact posteriors against the prior")
right.legend(fontsize=8, loc="lower left")
plt.tight_layout()
plt.show()
print("posterior standard deviations:", cov.diagonal() ** 0.5)

# %% [markdown]
# ## A linear VAE trained by SVI reaches PCA
#
# Now forget the closed form and train PPCA as a VAE: a linear decoder (`PPCA`) and a linear
# Gaussian encoder $q_\phi(z \mid x) = \mathcal N(Ax + b, LL^\top)$ (`LinearGaussian`), by stochastic
# gradient ascent on the ELBO with `ppl_vae.fit`. The linear encoder family contains the exact
# posterior, so at the optimum the ELBO equals $\log p(x)$, and the decoder's columns span the
# top-$q$ principal subspace (the linear-autoencoder result of Baldi & Hornik 1989, here in its
# probabilistic form; the last section shows the deterministic one).
#
# **The figure, left:** the test ELBO per epoch, rising to the exact $\log p(x)$ of the closed-form
# fit. **Right:** the cosines of the principal angles between span($W$) and the top-$q$ principal
# components: all near 1 means the same subspace — though $W$ itself is any rotation of it.
# **Try:** `full_cov=False` in the guide (a mean-field q cannot match a correlated posterior: a gap
# stays), a larger `lr`, or fewer epochs.

# %%
q = 8
model, guide = PPCA(data.x_dim, q), LinearGaussian(data.x_dim, q)
history = ppl_vae.fit(model, guide, data, "elbo", epochs=EPOCHS, lr=0.01, progress=False)
exact = exact_by_q[q].log_marginal(x_test).mean().item()

eigvecs = torch.linalg.eigh(torch.cov(x_train.T))[1].flip(1)[:, :q]  # top-q principal components
Qw, _ = torch.linalg.qr(model.W.detach().double())
cosines = torch.linalg.svdvals(eigvecs.T @ Qw)

fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
left.plot([h["epoch"] for h in history], [h["test_bound"] for h in history], label="linear VAE: test ELBO")
left.axhline(exact, color="k", ls="--", lw=1, label=f"exact log p(x), closed form: {exact:.2f}")
left.set(xlabel="epoch", ylabel="nats per test image", title="SVI on the ELBO against the exact answer",
         ylim=(exact - 15, exact + 2))
left.legend()
right.bar(range(1, q + 1), cosines.numpy())
right.set(ylim=(0, 1.05), xlabel="principal angle", ylabel="cosine", title="span(W) against PCA's top-q subspace")
plt.tight_layout()
plt.show()

result = ppl_vae.evaluate(model, guide, data.x_test, particles=100 if FAST else 1000)
print(f"after {EPOCHS} epochs: test ELBO {history[-1]['test_bound']:.3f}, exact log p(x) {exact:.3f}; "
      f"smallest principal cosine {cosines.min():.4f}")
print({k: v for k, v in result.items() if isinstance(v, float)})

# %% [markdown]
# ## PCA as a linear autoencoder, by gradient descent
#
# Drop the probabilities altogether: a linear autoencoder $\hat x = BA(x - \mu) + \mu$ with a
# $q$-dimensional code $z = A(x - \mu)$, trained by full-batch Adam on the mean squared
# reconstruction error $\frac1N \sum_n \lVert x_n - \hat x_n \rVert^2$. Its global optimum is any $BA$
# that projects onto the span of the top-$q$ principal components $U_q$ (Baldi & Hornik 1989): its
# error tends to PCA's, the sum of the discarded eigenvalues of the data covariance, and the principal
# angles between span($B$) and span($U_q$) tend to zero. $B$ itself is not $U_q$: any invertible
# mixing $BR$, $R^{-1}A$ gives the same reconstructions.
#
# **The first figure, left:** the reconstruction error per Adam step, falling to PCA's (dashed).
# **Right:** $1 - \cos$ of the largest principal angle between span($B$) and span($U_q$), on log axes,
# down to float32's floor. **The second figure:** the principal components (top row), $B$'s columns as
# learned (mixtures of them, in no particular order) and the same columns orthonormalized and rotated
# onto $U_q$ (orthogonal Procrustes), which match the components up to sign.
# **Try:** `AE_COMPONENTS = 8`, `AE_LR = 0.001` (slower, but the same end), or a non-linear code,
# `torch.tanh(xc @ A.T) @ B.T` in the loss (the optimum is no longer PCA's).

# %%
x_ae, q_ae = data.x_train, AE_COMPONENTS          # float32 grey levels
xc = x_ae - x_ae.mean(0)
eigvals, eigvecs = torch.linalg.eigh(xc.T @ xc / x_ae.shape[0])
eigvals, eigvecs = eigvals.flip(0), eigvecs.flip(1)
U = eigvecs[:, :q_ae]                               # top-q principal components
pca_error = eigvals[q_ae:].sum().item()             # PCA's optimal error: the discarded variance


def principal_cosines(B, U):
    """Cosines of the principal angles between span(B) and span(U) (U orthonormal), largest first."""
    return torch.linalg.svdvals(U.T @ torch.linalg.qr(B)[0])


torch.manual_seed(0)
A = (0.01 * torch.randn(q_ae, data.x_dim)).requires_grad_()
B = (0.01 * torch.randn(data.x_dim, q_ae)).requires_grad_()
opt = torch.optim.Adam([A, B], lr=AE_LR)
ae_history = []
for step in range(AE_STEPS):
    loss = (xc - xc @ A.T @ B.T).pow(2).sum(1).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step < 100 or step % 10 == 0 or step == AE_STEPS - 1:
        ae_history.append((step + 1, loss.item(), principal_cosines(B.detach(), U).min().item()))
ae_steps, ae_errors, ae_cosines = map(np.array, zip(*ae_history))

fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
left.plot(ae_steps, ae_errors, label="linear autoencoder")
left.axhline(pca_error, color="k", ls="--", lw=1, label=f"PCA, q = {q_ae}: {pca_error:.3f}")
left.set(xscale="log", xlabel="Adam step", ylabel="mean over images of ‖x − x̂‖²", title="reconstruction error")
left.legend()
right.plot(ae_steps, 1 - ae_cosines)
right.set(xscale="log", yscale="log", xlabel="Adam step", ylabel="1 − cos(largest principal angle)",
          title="span(B) against the top-q principal subspace (floor: float32)")
fig.tight_layout()
plt.show()

Bd = B.detach()
Q, _ = torch.linalg.qr(Bd)
u, _, vh = torch.linalg.svd(Q.T @ U)
aligned = Q @ (u @ vh)                                                   # Procrustes rotation onto U_q
rows = torch.stack([U.T, Bd.T / Bd.norm(dim=0)[:, None], aligned.T])    # [3, q, D]
images = (0.5 + 0.5 * rows / rows.abs().amax(-1, keepdim=True)).numpy()
c, h, w = data.image_shape
fig, ax = plt.subplots(figsize=(1.6 * q_ae + 2.4, 5.0))
ax.imshow(mosaic(images, data.image_shape, fill=0.5), cmap="RdBu_r", vmin=0, vmax=1, interpolation="nearest")
ax.set_yticks([(i + 0.5) * (h + 1) - 1 for i in range(3)],
              ["principal\ncomponents", "autoencoder B\n(as learned)", "B orthonormalized,\nrotated onto PCA"])
ax.set_xticks([(j + 0.5) * (w + 1) - 1 for j in range(q_ae)], [f"{j + 1}" for j in range(q_ae)])
ax.tick_params(length=0)
ax.set_title("basis images (red +, blue −)")
fig.tight_layout()
plt.show()
print(f"linear autoencoder after {AE_STEPS} steps: error {ae_errors[-1]:.4f} against PCA's {pca_error:.4f} "
      f"(q = {q_ae}); smallest principal cosine {ae_cosines[-1]:.4f}")
