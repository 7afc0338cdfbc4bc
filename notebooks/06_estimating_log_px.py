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
# # 6. Estimating log p(x) five ways
#
# A VAE's $\log p_\theta(x) = \log \int p_\theta(x, z)\, dz$ has no closed form, yet it is the number
# models are compared by. The estimators the lectures teach, each a function of
# `ppl_vae.evaluation.estimators.ESTIMATORS` (what `ppl-vae evaluate --estimator ...` runs), each
# taking `(model, guide, x)`:
#
# | name | estimate | what it is |
# |---|---|---|
# | `elbo` | $\frac1K \sum_k \log w_k$ | lower bound |
# | `is` | $\log \frac1K \sum_k w_k$ (Burda et al. 2016) | stochastic lower bound, rising with $K$ |
# | `laplace` | $\log p(x, z^*) + \frac d2 \log 2\pi - \frac12 \log\det H$ at the mode $z^*$ (Tierney & Kadane 1986) | approximation, exact for a Gaussian posterior |
# | `perturbative` | $V_0 + \log \mathbb E_q\big[\sum_{k \le 3} (\log w - V_0)^k / k!\big]$ (Bamler et al. 2017) | stochastic lower bound between the ELBO and IS |
# | `ais` | $\log \frac1C \sum_c w_c$, each chain annealed from $q$ to $p(z \mid x)$ by HMC (Neal 2001; Wu et al. 2017) | stochastic lower bound, rising with $T$ |
#
# with $w_k = p_\theta(x, z_k) / q_\phi(z_k \mid x)$, $z_k \sim q_\phi(z \mid x)$. We run them first on
# PPCA, where the exact answer is known (none of them uses it), with a proposal that is not the
# posterior; then on a VAE trained for a few seconds, where the longest AIS run is the reference.
# `scripts/teach/log_px_estimators.py` runs the same comparison on any trained run directory, at the
# sizes the tour's section 7 reports.

# %%
import math
import os

import matplotlib.pyplot as plt
import pyro
import torch

import ppl_vae
from ppl_vae.evaluation.estimators import ESTIMATORS
from ppl_vae.guides.gaussian import DiagonalGaussian
from ppl_vae.guides.linear import LinearGaussian
from ppl_vae.models.ppca import PPCA
from ppl_vae.models.vae import VAE

FAST = os.environ.get("PPL_VAE_NOTEBOOK_FAST") == "1"  # the test suite's quick run
DATASET = "digits"       # "mnist" needs the files in DATA_DIR (see docs/tour/03-training-options.md)
DATA_DIR = "../data"
POINTS = 20 if FAST else 100                 # test images each estimator sees
PARTICLES = [1, 10, 100] if FAST else [1, 10, 100, 1000, 5000]   # K of importance sampling (the largest: ELBO's too)
AIS_STEPS = [5, 20] if FAST else [10, 100, 500]                   # T of AIS
AIS_CHAINS = 4 if FAST else 16
VAE_EPOCHS = 3 if FAST else 60
pyro.set_rng_seed(0)


def run_all(model, guide, x):
    """Every estimator at every size on x: a list of the estimators' result dicts, each with a label and its compute."""
    jobs = [("elbo", dict(particles=PARTICLES[-1])), ("laplace", {}),
            ("perturbative", dict(particles=PARTICLES[-1], order=3))]
    jobs += [("is", dict(particles=k)) for k in PARTICLES]
    jobs += [("ais", dict(steps=t, chains=AIS_CHAINS)) for t in AIS_STEPS]
    entries = []
    for name, options in jobs:
        pyro.set_rng_seed(0)
        entry = ESTIMATORS[name](model, guide, x, **options)
        entry["compute"] = options.get("steps") or options.get("particles") or 1  # draws K, steps T, or Laplace's mode
        entries.append(entry)
    return entries


def label(e):
    return {"elbo": f"ELBO, K = {e['compute']}", "is": f"IS, K = {e['compute']}", "laplace": "Laplace",
            "perturbative": f"perturbative, K = 3, S = {e['compute']}",
            "ais": f"AIS, T = {e['compute']}, C = {AIS_CHAINS}"}[e["estimator"]]


def plot(ax, entries, reference, title):
    """Each estimate minus the reference (per point, then averaged) against its compute, ± 2 paired SE."""
    for e in entries:
        d = e["per_point"] - reference
        d = d[~d.isnan()]  # a Laplace point whose H is not positive definite is left out
        e["minus_ref"], e["minus_ref_se"] = d.mean().item(), d.std().item() / math.sqrt(d.numel())
    for name, style, text in (("is", "o-", "importance sampling"), ("ais", "s-", f"AIS, {AIS_CHAINS} chains")):
        line = [e for e in entries if e["estimator"] == name]
        ax.errorbar([e["compute"] for e in line], [e["minus_ref"] for e in line],
                    yerr=[2 * e["minus_ref_se"] for e in line], fmt=style, capsize=3, label=text)
    for name, marker in (("elbo", "v"), ("laplace", "D"), ("perturbative", "^")):
        e = next(e for e in entries if e["estimator"] == name)
        ax.errorbar([e["compute"]], [e["minus_ref"]], yerr=[2 * e["minus_ref_se"]], fmt=marker, capsize=3,
                    markersize=8, label=label(e))
    ax.axhline(0, color="k", lw=1, ls="--")
    ax.set(xscale="log", xlabel="compute: draws of q (K) or annealing steps (T)", title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)


data = ppl_vae.data.load(DATASET, data_dir=DATA_DIR, binarize="none")
print(data.name, tuple(data.x_train.shape), tuple(data.x_test.shape), f"{POINTS} test points")

# %% [markdown]
# ## Against the exact answer: PPCA
#
# PPCA fitted by its closed form, with $W$ rotated so that its posterior is correlated (as in
# notebook 3), and a mean-field proposal with the posterior's mean and twice the best mean-field
# standard deviations — a poor $q$, so that the estimators differ.
#
# **The figure** shows each estimate minus the exact $\log p(x)$ (dashed zero), with 2 standard
# errors of the per-image difference. Expect: the ELBO far below; importance sampling rising toward
# 0 with $K$; the perturbative bound between the ELBO and IS; Laplace at 0, since PPCA's posterior *is*
# Gaussian (the approximation is exact, whatever $q$); AIS rising to 0 with $T$.
# **Try:** `widen` 1 or 4 in the proposal below, or `LinearGaussian(...).set_exact(ppca)` — the exact
# posterior as proposal: every estimator is then exact with a single draw.

# %%
x64_train, x64 = data.x_train.double(), data.x_test[:POINTS].double()
fit = PPCA(data.x_dim, 8).double().fit_closed_form(x64_train)
R, _ = torch.linalg.qr(torch.randn(8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
ppca = PPCA(data.x_dim, 8, W=fit.W.detach() @ R, mu=fit.mu.detach(), sigma=fit.sigma.item()).double()
A, b, cov = ppca.posterior_params()
widen = 2.0
proposal = LinearGaussian(data.x_dim, 8, full_cov=False).double()
with torch.no_grad():
    proposal.A.copy_(A)
    proposal.b.copy_(b)
    proposal.log_diag.copy_((widen * torch.linalg.inv(cov).diagonal().rsqrt()).log())
    exact = ppca.log_marginal(x64)

ppca_entries = run_all(ppca, proposal, x64)
fig, ax = plt.subplots(figsize=(8, 5))
plot(ax, ppca_entries, exact, f"PPCA (q = 8), {POINTS} {data.name} test images: estimate − exact log p(x)")
ax.set(ylabel="nats per image")
fig.tight_layout()
plt.show()
print(f"exact log p(x): {exact.mean():.3f}")
for e in ppca_entries:
    print(f"  {label(e):<32} {e['estimate']:9.3f}   − exact {e['minus_ref']:+.3f} ± {e['minus_ref_se']:.3f}   "
          f"{e['seconds']:.2f} s")

# %% [markdown]
# ## A trained VAE: no exact answer
#
# The library's VAE (8-dimensional latent, 200 hidden units, Bernoulli pixels) trained by the ELBO
# for a few seconds. No estimate here is exact, so the reference is AIS at the largest $T$, the
# tightest of the bounds. The estimators see the same test images, so their *differences* are known
# far better than any one mean over the images.
#
# **The figure:** each estimate minus AIS with the largest $T$, against its compute. Now Laplace is
# an approximation off in either direction (the posterior of a non-linear decoder is not Gaussian,
# and the Hessian at the mode need not be positive definite), and importance sampling with a trained
# encoder gets within a fraction of a nat with $K$ in the hundreds. **Try:** `VAE_EPOCHS = 5`
# (a worse encoder: IS needs far more draws, AIS does not), more `AIS_CHAINS`, or
# `ESTIMATORS["is"](vae, guide, x, particles=...)` on the training images.

# %%
binary = ppl_vae.data.load(DATASET, data_dir=DATA_DIR)  # binary pixels for the Bernoulli VAE
vae, guide = VAE(binary.x_dim, 8, [200]), DiagonalGaussian(binary.x_dim, 8, [200])
ppl_vae.fit(vae, guide, binary, "elbo", epochs=VAE_EPOCHS, progress=False)
x_bin = binary.x_test[:POINTS]
vae_entries = run_all(vae, guide, x_bin)
reference = max((e for e in vae_entries if e["estimator"] == "ais"), key=lambda e: e["compute"])
fig, ax = plt.subplots(figsize=(8, 5))
plot(ax, vae_entries, reference["per_point"],
     f"VAE after {VAE_EPOCHS} epochs, {POINTS} test images: estimate − {label(reference)}")
ax.set(ylabel="nats per image")
fig.tight_layout()
plt.show()
for e in vae_entries:
    print(f"  {label(e):<32} {e['estimate']:9.3f}   − reference {e['minus_ref']:+.3f} ± {e['minus_ref_se']:.3f}   "
          f"{e['seconds']:.2f} s")
