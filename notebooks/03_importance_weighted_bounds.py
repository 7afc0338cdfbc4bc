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
# # 3. Importance-weighted bounds: tighter with K, and what that does to the gradients
#
# With $K$ particles $z_1, \dots, z_K \sim q_\phi(z \mid x)$ and weights
# $w_k = p_\theta(x, z_k) / q_\phi(z_k \mid x)$, the importance-weighted bound (Burda, Grosse &
# Salakhutdinov 2016) is
#
# $$\mathcal L_K(x) = \mathbb E\Big[\log \frac1K \sum_{k=1}^K w_k\Big] \;\le\; \log p_\theta(x).$$
#
# $\mathcal L_1$ is the ELBO; $\mathcal L_K$ never decreases with $K$ and tends to $\log p(x)$, and for
# large $K$ the gap is $\log p(x) - \mathcal L_K \approx \mathrm{Var}(w) / (2K\,\mathbb E[w]^2)$: it falls
# as $1/K$. We check all of this on PPCA, where $\log p(x)$ is exact (notebook 1), then look at the
# price: Rainforth et al. (2018) showed that the tighter bound gives the *guide* a noisier gradient —
# its signal-to-noise ratio falls like $1/\sqrt K$ — and Tucker et al. (2019) repaired it with the
# doubly-reparameterized estimator (DReG).
#
# Everything below is the library's: the objectives `make("iwae", particles=K)` and
# `make("dreg", particles=K)` (`ppl_vae.inference.objectives`), their bound as a function of the
# log weights, the log weights themselves (`ppl_vae.inference.weights.log_weights`) and the
# gradient statistics (`ppl_vae.inference.diagnostics.gradient_stats`). This notebook is also what
# `scripts/teach/iwae_tightening.py` runs.

# %%
import math
import os

import matplotlib.pyplot as plt
import pyro
import torch

import ppl_vae
from ppl_vae.guides.linear import LinearGaussian
from ppl_vae.inference.diagnostics import gradient_stats, summarize
from ppl_vae.inference.objectives import make
from ppl_vae.inference.weights import log_weights
from ppl_vae.models.ppca import PPCA

FAST = os.environ.get("PPL_VAE_NOTEBOOK_FAST") == "1"  # the test suite's quick run
DATASET = "digits"       # "mnist" needs the files in DATA_DIR (see docs/tour/03-training-options.md)
DATA_DIR = "../data"
COMPONENTS = 8           # PPCA's latent dimension q for the bounds
MAX_PARTICLES = 16 if FAST else 256   # K_max, a power of 2
SNR_COMPONENTS = 4       # q of the PPCA in the gradient-SNR section
SNR_PARTICLES = [1, 4, 16, 64] if FAST else [1, 4, 16, 64, 256, 1024]
SNR_SAMPLES = 30 if FAST else 100     # gradient estimates per K
SNR_POINTS = 10                       # test images in the fixed mini-batch

data = ppl_vae.data.load(DATASET, data_dir=DATA_DIR, binarize="none")  # grey levels in [0, 1]
x_train, x_test = data.x_train.double(), data.x_test.double()
torch.manual_seed(0)
print(data.name, tuple(x_train.shape), tuple(x_test.shape))

# %% [markdown]
# ## A model with an exact answer, and two proposals that are not the posterior
#
# `PPCA.fit_closed_form` gives the maximum-likelihood PPCA, whose $W$ has orthogonal columns, so its
# posterior covariance $\sigma^2 (W^\top W + \sigma^2 I)^{-1}$ is diagonal. Any rotation $WR$ has the
# same $p(x)$; a random one makes the posterior *correlated*, so that a factorized (mean-field)
# Gaussian $q$ is a real approximation. The two proposals have the exact posterior mean (from
# `PPCA.posterior_params`) and the best mean-field standard deviations, $1/\sqrt{\mathrm{diag}\,\Sigma^{-1}}$,
# once as they are and once doubled.

# %%
def rotated_ppca(x, q, seed=0):
    """The closed-form PPCA fit with W rotated by a random orthogonal R: the same p(x), a correlated posterior."""
    fit = PPCA(x.shape[1], q).double().fit_closed_form(x)
    R, _ = torch.linalg.qr(torch.randn(q, q, generator=torch.Generator().manual_seed(seed), dtype=x.dtype))
    return PPCA(x.shape[1], q, W=fit.W.detach() @ R, mu=fit.mu.detach(), sigma=fit.sigma.item()).double()


def mean_field(ppca, widen=1.0, shift=0.0):
    """q(z | x) = N(posterior mean + shift·sd, diag(sd · widen)²), sd = 1 / √diag(posterior precision)."""
    A, b, cov = ppca.posterior_params()
    sd = torch.linalg.inv(cov).diagonal().rsqrt()
    guide = LinearGaussian(ppca.x_dim, ppca.latent_dim, full_cov=False).double()
    with torch.no_grad():
        guide.A.copy_(A)
        guide.b.copy_(b + shift * sd)
        guide.log_diag.copy_((widen * sd).log())
    return guide


ppca = rotated_ppca(x_train, COMPONENTS)
exact = ppca.log_marginal(x_test).detach()
log_px = exact.mean().item()
print(f"exact log p(x) of PPCA (q = {COMPONENTS}) on {len(x_test)} test images: {log_px:.3f} nats")

# %% [markdown]
# ## $\mathcal L_K$ against $K$
#
# For each proposal we draw one pool of $16 K_{\max}$ log weights per test image and estimate
# $\mathbb E[\mathcal L_K]$ for every $K$ by applying the IWAE objective's bound to the disjoint
# groups of $K$ in it (so the curves use the same draws). Error bars: 2 standard errors over the
# test images of the per-image gap.
#
# **The first figure** shows $\mathcal L_K$ rising from the ELBO ($K = 1$) toward the exact
# $\log p(x)$ (dashed), more slowly for the worse proposal. **The second** shows the gap
# $\log p(x) - \mathcal L_K$ on log axes: for large $K$ it falls as $1/K$ (dotted).
# **Try:** `widen=3` (the gap at $K = 1$ grows like the KL, and $K$ must grow much more before the
# $1/K$ regime starts), a full-covariance guide set to the exact posterior
# (`LinearGaussian(ppca.x_dim, COMPONENTS).double().set_exact(ppca)`: every weight is $p(x)$ and the gap
# is 0 at every $K$), or `COMPONENTS = 2`.

# %%
@torch.no_grad()
def gap_curve(guide, ks, pool_size, chunk=8):
    """For each K: the mean over test images of log p(x) − E[L_K(x)] and its standard error."""
    pool = torch.cat([log_weights(ppca.model, guide.guide, xc, particles=pool_size)
                      for xc in x_test.split(chunk)], 1)                         # [pool, N]
    means, ses = [], []
    for k in ks:
        groups = pool[: pool_size // k * k].reshape(pool_size // k, k, -1).transpose(0, 1)  # [K, G, N]
        gap = exact - make("iwae", particles=k).bound(groups).mean(0)           # the library's L_K, per image
        means.append(gap.mean().item())
        ses.append(gap.std().item() / math.sqrt(gap.numel()))
    return means, ses


ks = [2 ** i for i in range(int(math.log2(MAX_PARTICLES)) + 1)]
gaps = {f"mean-field q, σ × {w:g}": gap_curve(mean_field(ppca, w), ks, 16 * MAX_PARTICLES) for w in (1.0, 2.0)}
for label, (means, ses) in gaps.items():
    print(f"  {label}: gap log p(x) − L_K = " + ", ".join(
        f"{m:.4f} ± {s:.4f} (K = {k})" for k, m, s in zip(ks, means, ses) if k in (1, 8, 64, ks[-1])))

fig, ax = plt.subplots(figsize=(7, 5))
for label, (means, ses) in gaps.items():
    ax.errorbar(ks, [log_px - m for m in means], yerr=[2 * s for s in ses], marker="o", capsize=2,
                label=f"L_K, {label}")
ax.axhline(log_px, color="k", ls="--", lw=1, label=f"exact log p(x) = {log_px:.2f}")
ax.set_xscale("log", base=2)
ax.set(xlabel="particles K", ylabel="nats per test image",
       title=f"IWAE bound L_K against K: PPCA (q = {COMPONENTS}) on {data.name}")
ax.grid(alpha=0.3)
ax.legend(loc="lower right")
fig.tight_layout()
plt.show()

fig, ax = plt.subplots(figsize=(7, 5))
for label, (means, ses) in gaps.items():
    ax.errorbar(ks, means, yerr=[2 * s for s in ses], marker="o", capsize=2, label=label)
last = next(iter(gaps.values()))[0][-1]
ax.plot(ks, [last * ks[-1] / k for k in ks], "k:", lw=1, label="∝ 1/K")
ax.set(yscale="log", xlabel="particles K", ylabel="log p(x) − L_K (nats)",
       title="the gap to the exact log-likelihood")
ax.set_xscale("log", base=2)
ax.grid(alpha=0.3, which="both")
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The gradient's signal-to-noise ratio against $K$
#
# At fixed $\theta$ and $\phi$ and on one fixed mini-batch, `gradient_stats` draws $M$ independent
# gradient estimates of an objective and gives, per scalar parameter, the mean and the variance;
# $\mathrm{SNR} = |\mathbb E g| / \mathrm{std}\, g$, and `summarize` takes its median over the model's
# parameters $\theta$ and over the guide's $\phi$. Rainforth et al. (2018): for IWAE,
# $\mathrm{SNR}_\theta = O(\sqrt K)$ but $\mathrm{SNR}_\phi = O(1/\sqrt K)$ — the guide's true gradient
# shrinks like $1/K$ while its noise shrinks only like $1/\sqrt K$ — so a tighter bound can train a
# *worse* encoder. DReG (Tucker et al. 2019) estimates the same expected gradient without the noisy
# score terms, and its $\mathrm{SNR}_\phi$ grows like $\sqrt K$; its $\theta$ gradient is IWAE's.
#
# The asymptotics need the weights to spread over many particles, so this section uses a smaller
# PPCA (`SNR_COMPONENTS`) and a proposal off the posterior by half a standard deviation in the mean
# and 1.3× too wide; the printed effective sample size $(\sum_k w_k)^2 / \sum_k w_k^2$ should grow with $K$.
#
# **The figure** shows the median SNR against $K$ on log axes, with the slopes $\pm\frac12$ dotted.
# **Try:** `SNR_COMPONENTS = 8` (the weights degenerate: the effective sample size stays small and
# the slopes flatten, as on a real VAE early in training — see the tour's section 15), `"stl"` beside
# `"dreg"`, or a proposal at the ELBO's optimum (`shift=0, widen=1`: its guide gradient has almost no
# signal at $K = 1$).

# %%
snr_ppca = rotated_ppca(x_train, SNR_COMPONENTS)
snr_guide = mean_field(snr_ppca, widen=1.3, shift=0.5)
x_batch = x_test[:SNR_POINTS]
snr = {}
for name in ("iwae", "dreg"):
    for k in SNR_PARTICLES:
        pyro.clear_param_store()  # the store holds the pair's parameters by name: start each cell from the modules
        pyro.set_rng_seed(0)
        stats = summarize(gradient_stats(make(name, particles=k), snr_ppca, snr_guide, x_batch, samples=SNR_SAMPLES))
        snr[name, k] = {group: stats[group]["snr_median"] for group in ("model", "guide")}
with torch.no_grad():
    ess = []
    for k in SNR_PARTICLES:
        lw = log_weights(snr_ppca.model, snr_guide.guide, x_batch, particles=k)
        ess.append((2 * lw.logsumexp(0) - (2 * lw).logsumexp(0)).exp().mean().item())


def slope(values):
    """Least-squares slope of log SNR on log K."""
    lx = torch.tensor(SNR_PARTICLES, dtype=torch.float64).log()
    ly = torch.tensor(values, dtype=torch.float64).log()
    return (((lx - lx.mean()) * (ly - ly.mean())).sum() / ((lx - lx.mean()) ** 2).sum()).item()


series = {"IWAE, guide φ": ("iwae", "guide"), "DReG, guide φ": ("dreg", "guide"), "IWAE, model θ": ("iwae", "model")}
fig, ax = plt.subplots(figsize=(7, 5))
slopes = {}
for label, (name, group) in series.items():
    values = [snr[name, k][group] for k in SNR_PARTICLES]
    slopes[label] = slope(values)
    ax.plot(SNR_PARTICLES, values, "o-", label=f"{label} (slope {slopes[label]:+.2f})")
for sign in (-1, 1):
    start = snr["iwae", 1]["guide"]
    ax.plot(SNR_PARTICLES, [start * k ** (sign / 2) for k in SNR_PARTICLES], "k:", lw=1)
ax.set(xscale="log", yscale="log", xlabel="particles K", ylabel="median SNR = |E g| / std g",
       title=f"gradient SNR against K: PPCA (q = {SNR_COMPONENTS}), {SNR_POINTS} images, {SNR_SAMPLES} estimates")
ax.grid(alpha=0.3, which="both")
ax.legend()
fig.tight_layout()
plt.show()

print("effective sample size: " + ", ".join(f"{e:.1f} (K = {k})" for k, e in zip(SNR_PARTICLES, ess)))
print("log-log slopes of the median SNR against K: " + ", ".join(f"{k} {v:+.2f}" for k, v in slopes.items())
      + " (theory for K → ∞: −½, +½, +½)")

# %% [markdown]
# ## What this means for training
#
# A larger $K$ buys a tighter bound and a better-trained *model* (its gradient's SNR rises), but with
# plain IWAE a worse-trained *guide*. Train the digits VAE with `ppl_vae.fit(..., "iwae", particles=K)`
# and with `"dreg"` at the same $K$ and compare their test bounds — notebook 4 does this for a
# model you write yourself, and the tour's section 7 compares every objective side by side.
