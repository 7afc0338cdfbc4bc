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
# # 8. Posterior families on posteriors known exactly: a flow on a banana, the guides on PPCA
#
# The toy posterior: prior $z \sim \mathcal N(0, I_2)$ and one observation $y = 0$ of
# $y \mid z \sim \mathcal N(z_2 - z_1^2, 0.3^2)$, so $p(z \mid y) \propto \mathcal N(z; 0, I)\,
# \mathcal N(0; z_2 - z_1^2, 0.3^2)$ lies along the parabola $z_2 = z_1^2$: a banana. Two variational
# families are fitted by maximizing the ELBO
# $\mathcal L(q) = \mathbb E_q[\log p(y, z) - \log q(z)] = \log p(y) - \mathrm{KL}(q \,\Vert\, p(\cdot \mid y))$
# with reparameterized gradients:
#
# - a diagonal Gaussian $q(z) = \mathcal N(m, \mathrm{diag}\, s^2)$ — the VAE's usual family;
# - a normalizing flow (Rezende & Mohamed 2015): $z = f_L \circ \dots \circ f_1(\varepsilon)$,
#   $\varepsilon \sim \mathcal N(0, I)$, with planar layers $f(z) = z + u \tanh(w^\top z + b)$ from
#   `pyro.distributions.transforms`, whose density follows from the change of variables,
#   $\log q(z) = \log \mathcal N(\varepsilon) - \sum_l \log |\det \partial f_l / \partial z|$.
#
# $\log p(y)$ is computed by quadrature on a grid, so $\mathrm{KL}(q \,\Vert\, p) = \log p(y) - \mathcal L(q)$
# is exact up to the Monte-Carlo error of $\mathcal L$. On a VAE the same families are the library's
# guides (`gaussian`, `planar`, `iaf`, `realnvp`, ...; the tour's section 8 climbs that ladder on the
# digits). The last section does the same with the library's guides on PPCA, where every gap is exact.
# The notebook's first two sections are what `scripts/teach/flow_posterior.py` runs.

# %%
import math
import os

import matplotlib.pyplot as plt
import numpy as np
import pyro
import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from torch import nn

FAST = os.environ.get("PPL_VAE_NOTEBOOK_FAST") == "1"  # the test suite's quick run
STEPS = 200 if FAST else 2000   # Adam steps per family
LAYERS = 16                     # planar layers of the flow
SAMPLES = 256                   # draws per ELBO gradient
NOISE = 0.3                     # the observation's standard deviation: smaller, a thinner banana
BOX = (-2.5, 2.5, -1.0, 3.0)    # z₁ from, to; z₂ from, to: the figures
WIDE = (-5.0, 5.0, -3.0, 12.0)  # quadrature of log p(y): holds all but a negligible part of the mass
pyro.set_rng_seed(0)


def log_joint(z):
    """log p(y = 0, z) = log N(z; 0, I) + log N(0; z₂ − z₁², NOISE²)."""
    prior = dist.Normal(0.0, 1.0).log_prob(z).sum(-1)
    return prior + dist.Normal(z[..., 1] - z[..., 0] ** 2, NOISE).log_prob(torch.zeros(()))


def grid(box, n):
    """n × n points covering ``box`` -> ([n, n, 2], the area of one cell)."""
    z1 = torch.linspace(box[0], box[1], n)
    z2 = torch.linspace(box[2], box[3], n)
    zz = torch.stack(torch.meshgrid(z1, z2, indexing="xy"), -1)
    return zz, (z1[1] - z1[0]) * (z2[1] - z2[0])


wide, cell = grid(WIDE, 1500)
log_evidence = (torch.logsumexp(log_joint(wide).flatten(), 0) + cell.log()).item()
zz, _ = grid(BOX, 300)
posterior = (log_joint(zz) - log_evidence).exp().numpy()
print(f"log p(y) by quadrature on a 1500×1500 grid: {log_evidence:.4f}")

# %% [markdown]
# ## Fitting the two families
#
# Each family is a small `nn.Module` whose `dist()` is its $q$; `fit` takes Adam steps on a
# reparameterized estimate of $-\mathcal L(q)$ from `SAMPLES` draws, and `elbo_estimate` estimates
# $\mathcal L(q)$ from 100 000 draws at the end.

# %%
class Diagonal(nn.Module):
    def __init__(self):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(2))
        self.log_scale = nn.Parameter(torch.zeros(2))

    def dist(self):
        return dist.Normal(self.loc, self.log_scale.exp()).to_event(1)


class Flow(nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.layers = nn.ModuleList(T.Planar(2) for _ in range(layers))

    def dist(self):
        base = dist.Normal(torch.zeros(2), torch.ones(2)).to_event(1)
        return dist.TransformedDistribution(base, list(self.layers))


def fit(q, steps, samples, seed=0):
    """Maximize the ELBO with reparameterized samples; returns the ELBO estimate per step."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(q.parameters(), lr=5e-3)
    trace = []
    for _ in range(steps):
        d = q.dist()
        z = d.rsample((samples,))
        elbo = (log_joint(z) - d.log_prob(z)).mean()  # planar layers score their own samples (cached)
        opt.zero_grad()
        (-elbo).backward()
        opt.step()
        trace.append(elbo.item())
    return trace


@torch.no_grad()
def elbo_estimate(q, samples=100_000):
    d = q.dist()
    z = d.rsample((samples,))
    lw = log_joint(z) - d.log_prob(z)
    return lw.mean().item(), lw.std().item() / math.sqrt(samples), z


families = {"diagonal Gaussian": Diagonal(), f"planar flow, {LAYERS} layers": Flow(LAYERS)}
traces = {name: fit(q, STEPS, SAMPLES) for name, q in families.items()}
results = {name: elbo_estimate(q) for name, q in families.items()}
for name, (elbo, se, _) in results.items():
    print(f"  {name}: ELBO {elbo:.4f} ± {se:.4f}, KL(q ‖ p(z | y)) = {log_evidence - elbo:.4f} nats")

# %% [markdown]
# ## What each family can fit
#
# **The first figure:** the banana-shaped posterior, then 100 000 draws of each fitted $q$ with the
# posterior's contours at 5%, 30% and 70% of its peak. The Gaussian, fitted by $\mathrm{KL}(q \Vert p)$,
# which punishes mass where $p$ has none, sits in the bend's middle and misses both arms; the flow
# follows the curve. **The second:** the ELBO of each family while fitting, below $\log p(y)$ (dashed)
# by exactly $\mathrm{KL}(q \Vert p)$. **Try:** `LAYERS = 2` or `4` (how many bends does a planar
# layer buy?), `NOISE = 0.1` (a thinner banana: which family loses more?), or `NOISE = 3` (a posterior
# much closer to a Gaussian).

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 4.6))
axes[0].imshow(posterior, origin="lower", extent=BOX, cmap="magma", aspect="auto")
axes[0].set_title(f"posterior p(z | y), log p(y) = {log_evidence:.3f}")
bins = [np.linspace(BOX[0], BOX[1], 120), np.linspace(BOX[2], BOX[3], 120)]
for ax, (name, (elbo, se, z)) in zip(axes[1:], results.items()):
    ax.hist2d(z[:, 0].numpy(), z[:, 1].numpy(), bins=bins, cmap="magma", density=True)
    ax.contour(zz[..., 0], zz[..., 1], posterior, levels=posterior.max() * np.array([0.05, 0.3, 0.7]),
               colors="w", linewidths=0.7)
    ax.set_title(f"{name}\nELBO {elbo:.3f}, KL(q ‖ p) = {log_evidence - elbo:.3f} nats", fontsize=10)
for ax in axes:
    ax.set(xlabel="z₁", ylabel="z₂", xlim=(BOX[0], BOX[1]), ylim=(BOX[2], BOX[3]))
fig.tight_layout()
plt.show()

fig, ax = plt.subplots(figsize=(7, 4.5))
window = max(1, STEPS // 50)
for name, trace in traces.items():
    smooth = np.convolve(trace, np.ones(window) / window, mode="valid")
    ax.plot(np.arange(window, len(trace) + 1), smooth, label=name)
ax.axhline(log_evidence, color="k", ls="--", lw=1, label="log p(y) (quadrature)")
low = min(min(np.convolve(t, np.ones(window) / window, mode="valid")[len(t) // 10:]) for t in traces.values())
ax.set_ylim(low - 0.2, log_evidence + 0.2)
ax.set(xlabel="Adam step", ylabel="ELBO (running mean)", title="ELBO during fitting")
ax.grid(alpha=0.3)
ax.legend(loc="lower right")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The library's guides on a posterior known exactly: PPCA
#
# The same question on a model of images whose posterior is known: PPCA fitted to the digits by its
# closed form, with $W$ rotated so that $p(z \mid x)$ is a *correlated* Gaussian (as in notebook 3),
# held fixed while four of the library's guides are trained on the ELBO — a linear or an MLP encoder,
# each with a diagonal or a full covariance. PPCA's ELBO has a closed form (`PPCA.elbo`) and so does
# the best $q$ of each family for each image (the exact posterior for the full covariance; the
# posterior mean with variances $1/\mathrm{diag}\,\Sigma^{-1}$ for the diagonal one), so the distance from
# the encoder's bound to $\log p(x)$ splits *exactly*, with no Monte-Carlo error, into
#
# $$\log p(x) - \mathcal L[q] = \underbrace{\log p(x) - \mathcal L[q^*]}_{\text{approximation gap}}
#   + \underbrace{\mathcal L[q^*] - \mathcal L[q]}_{\text{amortization gap}}.$$
#
# **The figure:** both gaps per guide, in nats per test image. The diagonal families keep an
# approximation gap that no training removes; the full-covariance ones have none; what is left is
# how far each trained encoder is from its family's best $q$. A linear encoder can *represent* the
# best $q$ of every image (the posterior mean is linear in $x$, its covariance the same for all), so
# its amortization gap is only training not yet finished; an MLP encoder has to learn that linear map.
# **Try:** more `PPCA_EPOCHS`, `LR`, or
# `PPCA_COMPONENTS = 2` (a smaller correlated posterior: a smaller diagonal gap).

# %%
import ppl_vae
from ppl_vae.guides.full_cov import FullCovGaussian
from ppl_vae.guides.gaussian import DiagonalGaussian
from ppl_vae.guides.linear import LinearGaussian
from ppl_vae.models.mlp import mlp
from ppl_vae.models.ppca import PPCA

PPCA_COMPONENTS = 8
PPCA_EPOCHS = 5 if FAST else 100
LR = 3e-3

digits = ppl_vae.data.load("digits", binarize="none")  # grey levels
q_dim, x_dim = PPCA_COMPONENTS, digits.x_dim
fit_cf = PPCA(x_dim, q_dim).double().fit_closed_form(digits.x_train.double())
R, _ = torch.linalg.qr(torch.randn(q_dim, q_dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
ppca = PPCA(x_dim, q_dim, W=fit_cf.W.detach() @ R, mu=fit_cf.mu.detach(), sigma=fit_cf.sigma.item()).double()
W, mu, sigma = ppca.W.detach().float(), ppca.mu.detach().float(), ppca.sigma.item()


def fixed_model(x):
    """PPCA with θ held fixed: constants, no pyro.module, so training moves the guide only."""
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(x.new_zeros(q_dim), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z @ W.T + mu, sigma).to_event(1), obs=x)


def q_of(guide, x):
    """(mean [N, q], covariance [N, q, q] or [q, q]) of q(z | x) for each guide kind."""
    if isinstance(guide, LinearGaussian):
        L = guide.scale_tril()
        return x @ guide.A.T + guide.b, L @ L.T
    if isinstance(guide, FullCovGaussian):
        loc, L = guide(x)
        return loc, L @ L.transpose(-1, -2)
    loc, scale = guide(x)
    return loc, torch.diag_embed(scale ** 2)


guides = {"linear, diagonal": LinearGaussian(x_dim, q_dim, full_cov=False),
          "linear, full covariance": LinearGaussian(x_dim, q_dim),
          "MLP, diagonal": DiagonalGaussian(x_dim, q_dim, [200]),
          "MLP, full covariance": FullCovGaussian(mlp([x_dim, 200], final_activation=True), 200, q_dim)}
x_test = digits.x_test.double()
A, b, cov = ppca.posterior_params()
with torch.no_grad():
    log_px = ppca.log_marginal(x_test)
    best_diag = torch.diag_embed(torch.linalg.inv(cov).diagonal().reciprocal())
    best = {"diagonal": ppca.elbo(x_test, x_test @ A.T + b, best_diag), "full covariance": log_px}
split = {}
for name, guide in guides.items():
    pyro.set_rng_seed(0)
    ppl_vae.fit(fixed_model, guide.guide, digits, "elbo", epochs=PPCA_EPOCHS, lr=LR, progress=False)
    with torch.no_grad():
        loc, q_cov = q_of(guide, digits.x_test)
        elbo = ppca.elbo(x_test, loc.double(), q_cov.double())
    star = best["diagonal" if name.endswith("diagonal") else "full covariance"]
    split[name] = ((log_px - star).mean().item(), (star - elbo).mean().item())
    print(f"{name:>24}: exact L[q] {elbo.mean():.3f}, log p(x) {log_px.mean():.3f}; approximation gap "
          f"{split[name][0]:.3f}, amortization gap {split[name][1]:.3f} nats")

fig, ax = plt.subplots(figsize=(8, 4))
names = list(split)
ax.barh(names, [a for a, _ in split.values()], label="approximation gap: log p(x) − L[q*]")
ax.barh(names, [m for _, m in split.values()], left=[a for a, _ in split.values()],
        label="amortization gap: L[q*] − L[q]")
ax.set(xlabel="nats per test image (exact)",
       title=f"PPCA (q = {q_dim}) on {digits.name}: where each guide's bound falls short")
ax.invert_yaxis()
ax.grid(alpha=0.3, axis="x")
ax.legend(fontsize=8, loc="lower right")
fig.tight_layout()
plt.show()
