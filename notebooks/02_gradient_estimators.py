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
# # 2. Two gradient estimators: the score function and the reparameterization trick
#
# Training a VAE needs $\nabla_\phi\, \mathbb E_{q_\phi(z)}[f(z)]$ with
# $f(z) = \log p(x, z) - \log q_\phi(z)$. Two unbiased estimators from $S$ draws:
#
# - **score function** (REINFORCE; Williams 1992), for any $q$:
#   $\hat g = \frac1S \sum_s \big[(f(z_s) - b)\, \nabla_\phi \log q_\phi(z_s) + \nabla_\phi f(z_s)\big]$,
#   where a baseline $b$ does not change the mean, since $\mathbb E_q[\nabla_\phi \log q_\phi] = 0$,
#   but can shrink the variance a lot;
# - **reparameterization** (Kingma & Welling 2014), for $z = \mu + \sigma\varepsilon$:
#   $\hat g = \frac1S \sum_s \nabla_\phi f(\mu + \sigma \varepsilon_s)$.
#
# We measure both *as the library computes them*: Pyro's `Trace_ELBO` (reparameterized) and
# `ppl_vae.infer.ScoreFunctionELBO` (score function, with `baseline=None` or a decaying-average
# baseline `"avg"`) — the same losses `ppl_vae.fit` trains with.
#
# **The toy** has an exact answer: $p(z) = \mathcal N(0, I_D)$, $p(x \mid z) = \mathcal N(z, I_D)$,
# $x = \mathbf 1$ observed, $q(z) = \mathcal N(\mu, 0.8^2 I)$ at $\mu = 0$. There
# $\nabla_\mu \mathrm{ELBO} = x - 2\mu = \mathbf 1$. We draw $R$ independent estimates at once: the
# guide holds one $\mu$ per repeat, inside a plate, so row $r$ of the gradient is the $r$-th estimate.
#
# This notebook is also what `scripts/teach/gradient_variance.py` runs.

# %%
import os

import matplotlib.pyplot as plt
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import Trace_ELBO

from ppl_vae.infer import ScoreFunctionELBO

FAST = os.environ.get("PPL_VAE_NOTEBOOK_FAST") == "1"  # the test suite's quick run
REPEATS = 300 if FAST else 2000        # independent estimates per point of each curve
SIGMA = 0.8                            # q's standard deviation
DIM = 10                               # latent dimension D of the first figure
SAMPLE_COUNTS = [1, 4, 16, 64] if FAST else [1, 2, 4, 8, 16, 32, 64, 128, 256]
DIMS = [1, 10, 100] if FAST else [1, 2, 5, 10, 20, 50, 100]
SAMPLES_VS_DIM = 10                    # draws S of the second figure
BASELINE_WARMUP = 50                   # steps that let the decaying-average baseline settle
pyro.set_rng_seed(0)


def toy(dim):
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(dim), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    def guide(x):
        mu = pyro.param("mu", torch.zeros(x.shape[0], dim))  # one μ per repeat
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(mu, SIGMA).to_event(1))

    return model, guide


ESTIMATORS = {
    "reparameterized": lambda s: Trace_ELBO(num_particles=s, vectorize_particles=True, max_plate_nesting=1),
    "score function": lambda s: ScoreFunctionELBO(num_particles=s),
    "score function, baseline": lambda s: ScoreFunctionELBO("avg", num_particles=s),
}


def estimates(name, dim, samples, repeats=REPEATS):
    """[repeats, dim] independent estimates of ∇_μ ELBO, each from `samples` draws."""
    pyro.clear_param_store()
    loss, (model, guide) = ESTIMATORS[name](samples), toy(dim)
    x = torch.ones(repeats, dim)
    for _ in range(BASELINE_WARMUP if name.endswith("baseline") else 0):
        loss.loss_and_grads(model, guide, x)   # only updates the baseline's running average
        pyro.param("mu").unconstrained().grad = None
    loss.loss_and_grads(model, guide, x)
    mu = pyro.param("mu").unconstrained()
    return -mu.grad.clone()                    # the loss is −ELBO


by_samples = {k: [estimates(k, DIM, s) for s in SAMPLE_COUNTS] for k in ESTIMATORS}
by_dim = {k: [estimates(k, d, SAMPLES_VS_DIM).var(0).sum().item() for d in DIMS] for k in ESTIMATORS}

# %% [markdown]
# ## Unbiased, all three
#
# The exact gradient is 1 in every coordinate. The check below takes every estimator, sample count
# and coordinate and reports the largest distance of the mean estimate from 1 in standard errors —
# a few standard errors at most, as expected of unbiased estimators over that many comparisons.

# %%
worst = 0.0
for name, runs in by_samples.items():
    for g in runs:
        se = g.std(0) / REPEATS ** 0.5
        worst = max(worst, ((g.mean(0) - 1.0).abs() / se).max().item())
print(f"largest |mean − exact gradient|: {worst:.1f} standard errors over "
      f"{len(ESTIMATORS) * len(SAMPLE_COUNTS) * DIM} coordinates")

# %% [markdown]
# ## Variance against the number of samples, and against the dimension
#
# **The first figure:** total variance $\sum_d \mathrm{Var}(\hat g_d)$ against $S$ at $D = 10$. Every
# estimator falls as $1/S$ (dotted), but the score function starts two orders of magnitude higher;
# the baseline removes most of that gap, not all. **The second:** the same at $S = 10$ against $D$: the
# reparameterized estimator's variance grows about linearly in $D$ (one term per coordinate), the
# score function's much faster, since each coordinate's estimate is multiplied by $f(z)$, whose own
# variance grows with $D$.
#
# **Try:** `SIGMA = 0.3` or `1.5` (how does each estimator react to a narrow or wide $q$?), a
# baseline that is off (`BASELINE_WARMUP = 1`), or a larger $D$ in `DIM`.

# %%
styles = dict(zip(ESTIMATORS, ("o-", "s-", "^-")))
fig, ax = plt.subplots(figsize=(7, 5))
for name in ESTIMATORS:
    ax.plot(SAMPLE_COUNTS, [g.var(0).sum().item() for g in by_samples[name]], styles[name], label=name)
first = by_samples["score function"][0].var(0).sum().item()
ax.plot(SAMPLE_COUNTS, [first / s for s in SAMPLE_COUNTS], "k:", lw=1, label="∝ 1/S")
ax.set(xscale="log", yscale="log", xlabel="samples S per estimate", ylabel="total variance Σ_d Var(ĝ_d)",
       title=f"variance of ∇_μ ELBO estimates against S, D = {DIM}")
ax.grid(alpha=0.3, which="both")
ax.legend()
fig.tight_layout()
plt.show()

fig, ax = plt.subplots(figsize=(7, 5))
for name in ESTIMATORS:
    ax.plot(DIMS, by_dim[name], styles[name], label=name)
ax.set(xscale="log", yscale="log", xlabel="latent dimension D", ylabel="total variance Σ_d Var(ĝ_d)",
       title=f"variance of ∇_μ ELBO estimates against D, S = {SAMPLES_VS_DIM}")
ax.grid(alpha=0.3, which="both")
ax.legend()
fig.tight_layout()
plt.show()

variance = {k: torch.tensor([g.var(0).sum().item() for g in v]) for k, v in by_samples.items()}
print(f"at D = {DIM}, averaged over S: the score function's variance is "
      f"{(variance['score function'] / variance['reparameterized']).mean():.0f}× the reparameterized one's, "
      f"{(variance['score function, baseline'] / variance['reparameterized']).mean():.0f}× with the baseline")
print("growth of the variance from D = {} to {}: ".format(DIMS[0], DIMS[-1])
      + ", ".join(f"{k} {v[-1] / v[0]:.0f}×" for k, v in by_dim.items()))

# %% [markdown]
# ## What this means for training
#
# A VAE with Gaussian latents trains by the reparameterized ELBO (`objective="elbo"` in
# `ppl_vae.fit`); discrete latents cannot be reparameterized and need the score function
# (`"score"`, `ScoreFunctionELBO`) with a baseline, or a relaxation — see the tour's
# [section 7](../docs/tour/07-comparing-inference.md). **Try:** train the digits VAE both ways for a
# few epochs, `ppl_vae.fit(model, guide, data, "score", epochs=5)` against `"elbo"`, and compare the
# test bounds.
