"""A Gaussian mixture with K components, its assignment summed out exactly.

    z ~ Categorical(π),   x | z = k ~ N(μ_k, Σ_k),   so   p(x) = Σ_k π_k N(x; μ_k, Σ_k),

with Σ_k full (Σ_k = L_k L_kᵀ, L_k lower-triangular with positive diagonal) or diagonal. The
global parameters π, μ, Σ are point estimates (maximum likelihood); the assignment z is the
only latent variable. ``model`` marks it for enumeration (``config_enumerate``), so Pyro's
``TraceEnum_ELBO`` with a guide that samples nothing maximizes log p(x) exactly (Obermeyer
et al. 2019), and ``infer_discrete`` gives the MAP assignment.

EM (Dempster et al. 1977; Bishop 2006, section 9.2) alternates the responsibilities
r_nk = p(z_n = k | x_n) with the closed-form M-step

    N_k = Σ_n r_nk,   π_k = N_k / N,   μ_k = (1/N_k) Σ_n r_nk x_n,
    Σ_k = (1/N_k) Σ_n r_nk (x_n − μ_k)(x_n − μ_k)ᵀ + ε I     (diagonal: its diagonal only),

with ε = ``reg_covar`` keeping Σ_k invertible, as scikit-learn's ``GaussianMixture`` does.
It starts from k-means++ seeds (Arthur & Vassilvitskii 2007): each point is assigned to its
nearest seed and one M-step on those hard assignments gives π, μ, Σ.

Sites: ``z`` (the assignment) and ``x`` inside ``pyro.plate("data")``.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import config_enumerate, infer_discrete
from torch import nn

from .mlp import rows

COVARIANCES = ("full", "diag")


class GMM(nn.Module):
    latent_sites = ()  # the assignment is summed out: a guide has nothing to sample
    enumerated = ("z",)
    fit_methods = ("em", "svi")
    objectives = ("enum",)
    continuous_data = True
    defaults = {"guide": "empty", "objective": "enum", "binarize": "none"}

    @classmethod
    def from_config(cls, config, data):
        """A mixture started from k-means++ seeds on the training data, whatever fits it next."""
        from ppl_vae.errors import UsageError

        x, k = data.train_epoch(0), config.pair.components
        if k > x.shape[0]:
            raise UsageError(f"--components {k} exceeds the {x.shape[0]} training points; pass a smaller --components.")
        model = cls(data.x_dim, k, config.pair.covariance).to(x)
        return model.init_em(x, torch.Generator(device=x.device).manual_seed(config.training.seed))

    def __init__(self, x_dim: int, components: int, covariance: str = "full", reg_covar: float = 1e-6):
        super().__init__()
        if components < 1:
            raise ValueError(f"a mixture needs at least one component, got {components}")
        if covariance not in COVARIANCES:
            raise ValueError(f"unknown covariance {covariance!r}; choose one of {', '.join(COVARIANCES)}")
        self.x_dim, self.components, self.covariance, self.reg_covar = x_dim, components, covariance, reg_covar
        self.logits = nn.Parameter(torch.zeros(components))
        self.means = nn.Parameter(torch.randn(components, x_dim))
        self.log_scale = nn.Parameter(torch.zeros(components, x_dim))  # log of L_k's diagonal
        self.lower = nn.Parameter(torch.zeros(components, x_dim, x_dim)) if covariance == "full" else None

    def scale_tril(self) -> torch.Tensor:
        """L_k with Σ_k = L_k L_kᵀ, shape [K, D, D]."""
        L = torch.diag_embed(self.log_scale.exp())
        return L + self.lower.tril(-1) if self.lower is not None else L

    def component(self, k) -> dist.Distribution:
        """N(μ_k, Σ_k) for a component index or a tensor of assignments of any shape."""
        if self.lower is None:
            return dist.Normal(self.means[k], self.log_scale[k].exp()).to_event(1)
        return dist.MultivariateNormal(self.means[k], scale_tril=self.scale_tril()[k])

    @config_enumerate
    def model(self, x: torch.Tensor, idx=None):
        pyro.module("gmm", self)
        x = rows(x)  # data given in its own shape, e.g. [B, 1, 28, 28], as vectors
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Categorical(logits=self.logits))
            pyro.sample("x", self.component(z), obs=x)

    # -- exact answers -------------------------------------------------------------------

    def joint(self, x: torch.Tensor) -> torch.Tensor:
        """log π_k + log N(x_n; μ_k, Σ_k), shape [N, K]; one component at a time, so memory stays [N, D]."""
        log_lik = torch.stack([self.component(k).log_prob(x) for k in range(self.components)], -1)
        return self.logits.log_softmax(0) + log_lik

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) = log Σ_k π_k N(x; μ_k, Σ_k) per data point, shape [N]."""
        return self.joint(x).logsumexp(-1)

    def responsibilities(self, x: torch.Tensor) -> torch.Tensor:
        """r_nk = p(z_n = k | x_n), shape [N, K]."""
        return self.joint(x).softmax(-1)

    @torch.no_grad()
    def map_assignments(self, x: torch.Tensor) -> torch.Tensor:
        """argmax_k p(z_n = k | x_n) by Pyro's ``infer_discrete`` (temperature 0), shape [N]."""
        decoded = infer_discrete(self.model, first_available_dim=-2, temperature=0)
        return poutine.trace(decoded).get_trace(x).nodes["z"]["value"]

    # -- EM ------------------------------------------------------------------------------

    @torch.no_grad()
    def set_params(self, weights: torch.Tensor, means: torch.Tensor, covariances: torch.Tensor) -> "GMM":
        """Set π [K], μ [K, D] and Σ ([K, D, D] full, [K, D] diagonal variances)."""
        self.logits.copy_(weights.log())
        self.means.copy_(means)
        if self.lower is None:
            self.log_scale.copy_(0.5 * covariances.log())
        else:
            L = torch.linalg.cholesky(covariances)
            self.log_scale.copy_(L.diagonal(dim1=-2, dim2=-1).log())
            self.lower.copy_(L.tril(-1))
        return self

    def covariances(self) -> torch.Tensor:
        """Σ_k: [K, D, D] for full, the variances [K, D] for diagonal."""
        if self.lower is None:
            return (2 * self.log_scale).exp()
        L = self.scale_tril()
        return L @ L.transpose(-1, -2)

    @torch.no_grad()
    def m_step(self, x: torch.Tensor, resp: torch.Tensor) -> "GMM":
        """Maximum-likelihood π, μ, Σ given responsibilities ``resp`` [N, K]."""
        nk = resp.sum(0) + 10 * torch.finfo(resp.dtype).eps  # no empty component divides by zero
        means = resp.T @ x / nk[:, None]
        if self.lower is None:
            var = resp.T @ x.pow(2) / nk[:, None] - means.pow(2)
            return self.set_params(nk / x.shape[0], means, var + self.reg_covar)
        cov = torch.stack([(resp[:, k, None] * (x - means[k])).T @ (x - means[k]) for k in range(self.components)])
        eye = torch.eye(self.x_dim, dtype=x.dtype, device=x.device)
        return self.set_params(nk / x.shape[0], means, cov / nk[:, None, None] + self.reg_covar * eye)

    @torch.no_grad()
    def em_step(self, x: torch.Tensor) -> "GMM":
        """One EM iteration: responsibilities under the current parameters, then the M-step."""
        return self.m_step(x, self.responsibilities(x))

    @torch.no_grad()
    def init_em(self, x: torch.Tensor, generator: torch.Generator | None = None) -> "GMM":
        """k-means++ seeds, every point assigned to its nearest seed, one M-step on that."""
        seeds = kmeans_plusplus(x, self.components, generator)
        nearest = torch.cdist(x, seeds).argmin(1)
        return self.m_step(x, nn.functional.one_hot(nearest, self.components).to(x.dtype))


def kmeans_plusplus(x: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """k seeds from the rows of ``x``: the first uniformly, each next one with probability ∝ D(x)²,
    the squared distance to the nearest seed so far (Arthur & Vassilvitskii 2007)."""
    if k > x.shape[0]:
        raise ValueError(f"cannot seed {k} components from {x.shape[0]} data points")
    first = torch.randint(x.shape[0], (1,), generator=generator, device=x.device)
    seeds = [x[first[0]]]
    d2 = (x - seeds[0]).pow(2).sum(1)
    for _ in range(1, k):
        i = torch.multinomial(d2 / d2.sum(), 1, generator=generator)[0]
        seeds.append(x[i])
        d2 = torch.minimum(d2, (x - x[i]).pow(2).sum(1))
    return torch.stack(seeds)


@torch.no_grad()
def fit_codes(codes: torch.Tensor, components: int, covariance: str = "full", iterations: int = 100,
              seed: int = 0) -> GMM:
    """A GMM fitted by EM to latent codes [N, q], e.g. the encoder means μ_φ(x) of a trained VAE."""
    gmm = GMM(codes.shape[1], components, covariance).to(codes)
    gmm.init_em(codes, torch.Generator(device=codes.device).manual_seed(seed))
    for _ in range(iterations):
        gmm.em_step(codes)
    return gmm
