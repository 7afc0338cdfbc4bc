"""Probabilistic PCA (Tipping & Bishop 1999): the linear-Gaussian model with exact answers.

    z ~ N(0, I_q),   x | z ~ N(W z + μ, σ² I_D),

so that, with M = WᵀW + σ² I_q,

    p(x)     = N(x; μ, W Wᵀ + σ² I_D),
    p(z | x) = N(z; M⁻¹ Wᵀ (x − μ), σ² M⁻¹).

and the ELBO of any Gaussian q(z | x) = N(m, S) is

    L(q) = E_q[log p(x | z)] + E_q[log p(z)] + H[q]
         = −D/2 log(2πσ²) − (‖x − W m − μ‖² + tr(W S Wᵀ)) / (2σ²)
           − q/2 log 2π − (‖m‖² + tr S) / 2 + q/2 log(2πe) + ½ log|S|.

These closed forms are the reference every bound and gradient estimator is tested against.

Fitting (Tipping & Bishop 1999, sections 3.2 and 4.2). With the sample mean x̄ and
covariance S = (1/N) Σ_n (x_n − x̄)(x_n − x̄)ᵀ, eigenvalues λ_1 ≥ … ≥ λ_D and eigenvectors U:

- closed-form maximum likelihood: μ = x̄, σ² = (1/(D − q)) Σ_{j>q} λ_j,
  W = U_q (Λ_q − σ² I)^{1/2} R (we take R = I);
- EM: the E-step computes the posterior moments E[z_n] = M⁻¹Wᵀ(x_n − μ) and
  E[z_n z_nᵀ] = σ² M⁻¹ + E[z_n] E[z_n]ᵀ; the M-step sets
  W ← [Σ_n (x_n − μ) E[z_n]ᵀ] [Σ_n E[z_n z_nᵀ]]⁻¹ and
  σ² ← (1/(N D)) Σ_n (‖x_n − μ‖² − 2 E[z_n]ᵀ Wᵀ(x_n − μ) + tr(E[z_n z_nᵀ] WᵀW)),
  which never decreases log p(x) and converges to the closed form.

Sites: ``z`` and ``x`` inside ``pyro.plate("data")``.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from .mlp import rows


class PPCA(nn.Module):
    latent_sites = ("z",)
    enumerated = ()
    fit_methods = ("closed-form", "em", "svi")
    objectives = None
    continuous_data = True
    defaults = {"guide": "linear", "objective": "elbo", "binarize": "none"}

    @classmethod
    def from_config(cls, config, data):
        from ppl_vae.errors import UsageError

        if config.pair.latent_dim >= data.x_dim:
            raise UsageError(f"PPCA needs --latent-dim below the data dimension {data.x_dim}, "
                             f"got {config.pair.latent_dim}; pass a smaller --latent-dim.")
        return cls(data.x_dim, config.pair.latent_dim)

    def __init__(self, x_dim: int, latent_dim: int, W=None, mu=None, sigma: float = 1.0):
        super().__init__()
        if not 1 <= latent_dim < x_dim:
            raise ValueError(f"PPCA needs 1 ≤ latent_dim < x_dim, got latent_dim={latent_dim}, x_dim={x_dim}")
        self.x_dim, self.latent_dim = x_dim, latent_dim
        self.W = nn.Parameter(torch.as_tensor(W, dtype=torch.get_default_dtype()) if W is not None
                              else 0.1 * torch.randn(x_dim, latent_dim))
        self.mu = nn.Parameter(torch.as_tensor(mu, dtype=torch.get_default_dtype()) if mu is not None else torch.zeros(x_dim))
        self.log_sigma = nn.Parameter(torch.tensor(float(sigma)).log())

    @property
    def sigma(self) -> torch.Tensor:
        return self.log_sigma.exp()

    def model(self, x: torch.Tensor, idx=None):
        pyro.module("ppca", self)
        x = rows(x)  # data given in its own shape, e.g. [B, 1, 28, 28], as vectors
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.latent_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.W.T + self.mu, self.sigma).to_event(1), obs=x)

    def marginal(self) -> dist.MultivariateNormal:
        """p(x) = N(μ, W Wᵀ + σ² I)."""
        cov = self.W @ self.W.T + self.sigma ** 2 * torch.eye(self.x_dim, dtype=self.W.dtype, device=self.W.device)
        return dist.MultivariateNormal(self.mu, covariance_matrix=cov)

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) per data point, shape [N]."""
        return self.marginal().log_prob(x)

    def posterior_params(self):
        """(A, b, Σ) with p(z | x) = N(A x + b, Σ): A = M⁻¹Wᵀ, b = −A μ, Σ = σ² M⁻¹."""
        eye = torch.eye(self.latent_dim, dtype=self.W.dtype, device=self.W.device)
        m_inv = torch.linalg.inv(self.W.T @ self.W + self.sigma ** 2 * eye)
        A = m_inv @ self.W.T
        return A, -A @ self.mu, self.sigma ** 2 * m_inv

    def posterior(self, x: torch.Tensor) -> dist.MultivariateNormal:
        """Exact p(z | x), batch shape [N]."""
        A, b, cov = self.posterior_params()
        return dist.MultivariateNormal(x @ A.T + b, covariance_matrix=cov)

    def elbo(self, x: torch.Tensor, q_loc: torch.Tensor, q_cov: torch.Tensor) -> torch.Tensor:
        """Exact ELBO per data point of q(z | x) = N(q_loc, q_cov); q_cov [q, q] or [N, q, q]."""
        D, q = self.x_dim, self.latent_dim
        sigma2 = self.sigma ** 2
        resid = x - q_loc @ self.W.T - self.mu
        trace_wsw = torch.einsum("ij,...jk,ik->...", self.W, q_cov, self.W)
        expected_lik = -0.5 * D * torch.log(2 * torch.pi * sigma2) - (resid.pow(2).sum(-1) + trace_wsw) / (2 * sigma2)
        expected_prior = -0.5 * q * math.log(2 * math.pi) - 0.5 * (q_loc.pow(2).sum(-1) + q_cov.diagonal(dim1=-2, dim2=-1).sum(-1))
        entropy = 0.5 * q * math.log(2 * math.pi * math.e) + 0.5 * torch.logdet(q_cov)
        return expected_lik + expected_prior + entropy

    # -- fitting -------------------------------------------------------------------------

    @torch.no_grad()
    def _set(self, W: torch.Tensor, mu: torch.Tensor, sigma2: torch.Tensor) -> None:
        self.W.copy_(W)
        self.mu.copy_(mu)
        self.log_sigma.copy_(0.5 * sigma2.log())

    @torch.no_grad()
    def fit_closed_form(self, x: torch.Tensor) -> "PPCA":
        """Set (W, μ, σ²) to the maximum-likelihood solution on ``x`` [N, D] (eigendecomposition in float64)."""
        q = self.latent_dim
        x64 = x.double()
        mu = x64.mean(0)
        xc = x64 - mu
        evals, evecs = torch.linalg.eigh(xc.T @ xc / x.shape[0])  # ascending
        evals, evecs = evals.flip(0), evecs.flip(1)
        sigma2 = evals[q:].mean()
        W = evecs[:, :q] * (evals[:q] - sigma2).clamp_min(0).sqrt()
        self._set(W, mu, sigma2)
        return self

    @torch.no_grad()
    def init_em(self, x: torch.Tensor, generator: torch.Generator | None = None) -> "PPCA":
        """μ = x̄ (its maximum-likelihood value whatever W and σ²), W random, σ² = mean variance."""
        mu = x.mean(0)
        W = torch.randn(self.W.shape, generator=generator, dtype=x.dtype, device=x.device) * x.std(0).mean()
        self._set(W, mu, (x - mu).pow(2).mean())
        return self

    @torch.no_grad()
    def em_step(self, x: torch.Tensor) -> "PPCA":
        """One EM iteration on ``x`` [N, D]: the exact posterior moments, then the closed-form M-step."""
        n, d = x.shape
        A, b, cov = self.posterior_params()
        ez = x @ A.T + b                        # E[z_n], [N, q]
        ezz = n * cov + ez.T @ ez               # Σ_n E[z_n z_nᵀ]
        xc = x - self.mu
        W = torch.linalg.solve(ezz, ez.T @ xc).T  # [Σ (x_n − μ) E[z_n]ᵀ] [Σ E[z_n z_nᵀ]]⁻¹
        sigma2 = (xc.pow(2).sum() - 2 * (ez @ W.T * xc).sum() + torch.trace(ezz @ W.T @ W)) / (n * d)
        self._set(W, self.mu, sigma2)
        return self
