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
# # 4. Your own model: write a Pyro pair, check it, train it three ways
#
# Nothing in this notebook comes from the library's model zoo: the generative model and the encoder
# are written here, the way Pyro's own examples write a VAE (`examples/vae/vae.py`) — an `nn.Module`
# per network, `pyro.module` to register each where it is used, the data points in
# `pyro.plate("data", ...)`, and `.to_event(1)` so that a latent vector and an image are one event
# each. The library then does three things with it:
#
# 1. `ppl_vae.check(model, guide, data)` — a one-batch dry run of every objective, training nothing,
#    that says which objectives can train this pair and, for the others, why not;
# 2. `ppl_vae.fit(make_pair, data, objective, ...)` — trains a fresh pair per objective;
# 3. `ppl_vae.evaluate(model, guide, x_test)` — the test ELBO and the importance-sampled
#    negative log-likelihood $-\log p(x)$, the number to compare models by.

# %%
import os

import matplotlib.pyplot as plt
import pyro
import pyro.distributions as dist
import torch
from torch import nn

import ppl_vae

FAST = os.environ.get("PPL_VAE_NOTEBOOK_FAST") == "1"  # the test suite's quick run
DATASET = "digits"       # "mnist" needs the files in DATA_DIR (see docs/tour/03-training-options.md)
DATA_DIR = "../data"
Z_DIM, HIDDEN = 8, 200
EPOCHS = 3 if FAST else 100
OBJECTIVES = {"elbo": 1, "iwae": 5, "dreg": 5}   # objective → particles K per data point
EVAL_PARTICLES = 50 if FAST else 1000           # importance samples of the test NLL
pyro.set_rng_seed(0)

data = ppl_vae.data.load(DATASET, data_dir=DATA_DIR)  # binary pixels, redrawn every epoch
print(data.name, tuple(data.x_train.shape), tuple(data.x_test.shape))

# %% [markdown]
# ## The pair
#
# $p(z) = \mathcal N(0, I)$, $p_\theta(x \mid z) = \mathrm{Bernoulli}(\sigma(f_\theta(z)))$ per pixel, and
# $q_\phi(z \mid x) = \mathcal N(\mu_\phi(x), \mathrm{diag}\, \sigma_\phi(x)^2)$. The model and the guide
# must name their latent site alike (`"latent"`); the observed site (`"obs"`) is the one with `obs=`.

# %%
class Decoder(nn.Module):
    def __init__(self, z_dim, hidden_dim, x_dim):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(z_dim, hidden_dim), nn.Linear(hidden_dim, x_dim)

    def forward(self, z):
        return self.fc2(nn.functional.softplus(self.fc1(z)))  # logits of the pixels


class Encoder(nn.Module):
    def __init__(self, z_dim, hidden_dim, x_dim):
        super().__init__()
        self.fc1 = nn.Linear(x_dim, hidden_dim)
        self.fc21, self.fc22 = nn.Linear(hidden_dim, z_dim), nn.Linear(hidden_dim, z_dim)

    def forward(self, x):
        hidden = nn.functional.softplus(self.fc1(x))
        return self.fc21(hidden), nn.functional.softplus(self.fc22(hidden)) + 1e-4  # loc, scale


class VAE(nn.Module):
    def __init__(self, x_dim, z_dim=Z_DIM, hidden_dim=HIDDEN):
        super().__init__()
        self.z_dim = z_dim
        self.decoder = Decoder(z_dim, hidden_dim, x_dim)
        self.encoder = Encoder(z_dim, hidden_dim, x_dim)

    def model(self, x):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("latent", dist.Normal(x.new_zeros(self.z_dim), 1.0).to_event(1))
            pyro.sample("obs", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            loc, scale = self.encoder(x)
            pyro.sample("latent", dist.Normal(loc, scale).to_event(1))


def make_pair(data):
    """A fresh, seeded pair for each training run: fit builds it after seeding."""
    vae = VAE(data.x_dim)
    return vae.model, vae.guide

# %% [markdown]
# ## Which objectives can train it?
#
# `ppl_vae.check` runs each objective's checks and one evaluation of its loss and test bound on two
# training points. A refusal is one sentence saying what the objective needs that this pair lacks
# (a discrete latent, sites marked for enumeration, ...), raised before anything trains — the same
# sentence `fit` would raise. **Try:** rename the guide's site to `"z"` and rerun the cell, or make
# the prior a `dist.Laplace(...)` and see which objectives it rules out.

# %%
vae = VAE(data.x_dim)
verdicts = ppl_vae.check(vae.model, vae.guide, data)
width = max(map(len, verdicts))
print(f"{'objective':<{width}}  verdict")
for name, verdict in verdicts.items():
    print(f"{name:<{width}}  {verdict}")
print(f"\n{sum(v == 'ok' for v in verdicts.values())} of {len(verdicts)} objectives can train this pair")

# %% [markdown]
# ## Three objectives
#
# The reparameterized ELBO ($K = 1$), the importance-weighted bound $\mathcal L_5$ (IWAE) and the same
# bound with the doubly-reparameterized guide gradient (DReG; notebook 3 shows why it exists). Each
# run starts from the same seeded initial weights and sees the same mini-batches.

# %%
histories = {name: ppl_vae.fit(make_pair, data, name, particles=k, epochs=EPOCHS, progress=False)
             for name, k in OBJECTIVES.items()}
results = {name: ppl_vae.evaluate(h.model, h.guide, data.x_test, particles=EVAL_PARTICLES)
           for name, h in histories.items()}
for name, r in results.items():
    print(f"{name:>5} (K = {OBJECTIVES[name]}): test bound {histories[name][-1]['test_bound']:.2f}, "
          f"test ELBO {r['test_elbo']:.2f} ± {r['test_elbo_se']:.2f}, "
          f"test NLL {r['test_nll']:.2f} ± {r['test_nll_se']:.2f} nats (K = {EVAL_PARTICLES})")

# %% [markdown]
# ## Comparing them
#
# **Left:** each run's own test bound per epoch — the ELBO for `elbo`, $\mathcal L_5$ for the other
# two, so the IWAE curves start higher partly because their bound is tighter, not only because their
# model is better. **Right:** what settles it, the same estimates for every trained pair
# (`ppl_vae.evaluate`): the test ELBO and the importance-sampled NLL with $K = 1000$ (lower is
# better), with 2 standard errors over the test images (the runs share the test images, so their
# differences are known better than these bars say). Expect the importance-weighted runs to reach the
# lower NLL; plain IWAE's encoder is trained for a bound that forgives a loose $q$, and its ELBO can
# fall behind, which DReG's less noisy guide gradient avoids.
# **Try:** `EPOCHS = 100`, more particles (`{"iwae": 20, "dreg": 20}`), or add `"stl"` or
# `"renyi"` to `OBJECTIVES` — any objective the check above accepts.

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
for name, history in histories.items():
    left.plot([h["epoch"] for h in history], [h["test_bound"] for h in history],
              label=f"{name} (K = {OBJECTIVES[name]})")
left.set(xlabel="epoch", ylabel="test bound (nats per image)", title="each objective's own test bound")
left.grid(alpha=0.3)
left.legend()
names = list(results)
positions = torch.arange(len(names), dtype=torch.float64)
for offset, key, label in ((-0.2, "elbo", "−test ELBO"), (0.2, "nll", f"test NLL, K = {EVAL_PARTICLES}")):
    sign = -1 if key == "elbo" else 1
    values = [sign * results[n][f"test_{key}"] for n in names]
    errors = [2 * results[n][f"test_{key}_se"] for n in names]
    right.bar(positions + offset, values, width=0.4, yerr=errors, capsize=3, label=label)
low = min(results[n]["test_nll"] for n in names)
right.set(xticks=positions, xticklabels=names, ylim=(low - 3, -min(results[n]["test_elbo"] for n in names) + 2),
          ylabel="nats per test image (lower is better)", title="the trained pairs, evaluated alike")
right.legend()
plt.tight_layout()
plt.show()
