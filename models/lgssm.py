"""A linear-Gaussian state-space model: the exact reference for sequences, as PPCA is for vectors.

    z_1 ~ N(0, s₀² I),   z_t | z_{t−1} ~ N(A z_{t−1}, diag q²),   x_t | z_t ~ N(C z_t, diag r²),

for sequences x_{1:L} of their own lengths L ≤ T (the steps past L are padding, masked out of every
log-density). Its marginal log p(x_{1:L}) and its posterior p(z_{1:L} | x_{1:L}) are Gaussian and the
Kalman filter and Rauch–Tung–Striebel smoother compute them exactly (Kalman 1960; Rauch, Tung &
Striebel 1965). With the prediction m_{t|t−1}, P_{t|t−1} and S_t = C P_{t|t−1} Cᵀ + diag r²,

    log p(x_{1:L}) = Σ_{t ≤ L} log N(x_t; C m_{t|t−1}, S_t),

and the posterior factorizes backwards in time (the smoother's backward kernel),

    p(z_t | z_{t+1}, x_{1:L}) = N(m_{t|t} + J_t (z_{t+1} − A m_{t|t}), P_{t|t} − J_t P_{t+1|t} J_tᵀ),
    J_t = P_{t|t} Aᵀ P_{t+1|t}⁻¹,   p(z_L | x_{1:L}) = N(m_{L|L}, P_{L|L}).

``model`` is the Pyro program (a data plate over sequences, ``pyro.markov`` over time, masks past
each length); ``init`` and ``step`` are the same model one time step at a time, the form Pyro's
``SMCFilter`` and the SMC bounds (:mod:`ppl_vae.inference.smc`) take, with :class:`Bootstrap` (the
transition as proposal) and :class:`LinearProposal` (a learned q(z_t | z_{t−1}, x_t)) as guides. ``exact_guide`` samples that posterior, so its ELBO is log p(x) for every draw;
``marginal_guide`` samples the smoothing marginals p(z_t | x_{1:L}) independently across time, a
guide whose ELBO falls short of log p(x) by the mutual information it ignores. ``log_marginal`` is
what ``ppl_vae.evaluate`` reports as exact.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn


def step_mask(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """bool [B, T]: the steps within each sequence's length (all of them without ``lengths``)."""
    steps = torch.arange(x.shape[1], device=x.device)
    if lengths is None:
        return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    return steps < lengths.to(x.device)[:, None]


class LGSSM(nn.Module):
    """The model above with parameters A [k, k], C [d, k], log q [k], log r [d] and a fixed s₀."""

    def __init__(self, x_dim: int, z_dim: int, init_scale: float = 1.0):
        super().__init__()
        self.A = nn.Parameter(0.9 * torch.eye(z_dim))
        self.C = nn.Parameter(torch.randn(x_dim, z_dim) / z_dim ** 0.5)
        self.log_q = nn.Parameter(torch.full((z_dim,), -1.0))
        self.log_r = nn.Parameter(torch.full((x_dim,), -1.0))
        self.init_scale = init_scale

    def model(self, x, lengths=None):
        pyro.module("lgssm", self)
        mask = step_mask(x, lengths)
        q, r = self.log_q.exp(), self.log_r.exp()
        z = None
        with pyro.plate("sequences", x.shape[0]):
            for t in pyro.markov(range(x.shape[1])):
                loc = x.new_zeros(self.A.shape[0]) if z is None else z @ self.A.T
                scale = x.new_full((self.A.shape[0],), self.init_scale) if z is None else q
                z = pyro.sample(f"z_{t}", dist.Normal(loc, scale).to_event(1).mask(mask[:, t]))
                pyro.sample(f"x_{t}", dist.Normal(z @ self.C.T, r).to_event(1).mask(mask[:, t]), obs=x[:, t])

    def init(self, state: dict, x) -> None:
        state["z"] = None

    def step(self, state: dict, x_t) -> None:
        """One time step of ``model``: z_t | z_{t−1} and x_t | z_t for a batch of sequences, z_{t−1} from ``state``."""
        pyro.module("lgssm", self)
        z_prev = state["z"]
        loc = x_t.new_zeros(self.A.shape[0]) if z_prev is None else z_prev @ self.A.T
        scale = x_t.new_full((self.A.shape[0],), self.init_scale) if z_prev is None else self.log_q.exp()
        with pyro.plate("sequences", x_t.shape[0]):
            z = pyro.sample("z", dist.Normal(loc, scale).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.C.T, self.log_r.exp()).to_event(1), obs=x_t)
        state["z"] = z

    # -- exact answers -------------------------------------------------------------------

    def filter(self, x, lengths=None):
        """The Kalman filter: (log p(x_{1:L}) [B], filtered means [B, T, k] and covariances [B, T, k, k])."""
        k = self.A.shape[0]
        mask = step_mask(x, lengths)
        A, C, Q, R = self.A.to(x), self.C.to(x), self.noise(self.log_q, x), self.noise(self.log_r, x)
        m = x.new_zeros(x.shape[0], k)
        P = (self.init_scale ** 2 * torch.eye(k, dtype=x.dtype, device=x.device)).expand(x.shape[0], k, k)
        log_px, means, covs = x.new_zeros(x.shape[0]), [], []
        for t in range(x.shape[1]):
            if t > 0:
                m, P = m @ A.T, A @ P @ A.T + Q
            S = C @ P @ C.T + R
            predicted = dist.MultivariateNormal(m @ C.T, covariance_matrix=S)
            log_px = log_px + torch.where(mask[:, t], predicted.log_prob(x[:, t]), 0.0)
            gain = torch.linalg.solve(S, C @ P).transpose(-1, -2)             # K = P Cᵀ S⁻¹
            m_new = m + (gain @ (x[:, t] - m @ C.T)[..., None])[..., 0]
            P_new = P - gain @ S @ gain.transpose(-1, -2)
            keep = mask[:, t]
            m, P = torch.where(keep[:, None], m_new, m), torch.where(keep[:, None, None], P_new, P)
            means.append(m)
            covs.append(0.5 * (P + P.transpose(-1, -2)))
        return log_px, torch.stack(means, 1), torch.stack(covs, 1)

    @staticmethod
    def noise(log_scale, x) -> torch.Tensor:
        """diag σ² of a noise's log σ, in x's dtype and device."""
        return torch.diag(log_scale.to(x).exp() ** 2)

    def log_marginal(self, x, lengths=None) -> torch.Tensor:
        """log p(x_{1:L}) per sequence [B], by the Kalman filter."""
        return self.filter(x, lengths)[0]

    def backward_kernels(self, x, lengths=None):
        """(filtered means m_{t|t} [B, T, k], covariances P_{t|t}, predicted covariances P_{t+1|t}, gains
        J_t [B, T, k, k], the backward kernels' covariances P_{t|t} − J_t P_{t+1|t} J_tᵀ), for the smoother and
        the exact guide."""
        _, m, P = self.filter(x, lengths)
        A = self.A.to(x)
        predicted = A @ P @ A.T + self.noise(self.log_q, x)                   # P_{t+1|t}
        J = torch.linalg.solve(predicted, A @ P).transpose(-1, -2)             # P_{t|t} Aᵀ P_{t+1|t}⁻¹
        cov = P - J @ predicted @ J.transpose(-1, -2)
        return m, P, predicted, J, 0.5 * (cov + cov.transpose(-1, -2))

    def smoother(self, x, lengths=None):
        """The Rauch–Tung–Striebel smoother: the posterior marginals' means [B, T, k] and covariances
        [B, T, k, k] (past a sequence's length: its last filtered ones, which nothing uses)."""
        m, P, predicted, J, _ = self.backward_kernels(x, lengths)
        A = self.A.to(x)
        last = step_mask(x, lengths).sum(1) - 1
        means, covs = [m[:, -1]], [P[:, -1]]
        for t in range(x.shape[1] - 2, -1, -1):
            inside = (t < last)[:, None]
            mean = m[:, t] + (J[:, t] @ (means[0] - m[:, t] @ A.T)[..., None])[..., 0]
            cov = P[:, t] + J[:, t] @ (covs[0] - predicted[:, t]) @ J[:, t].transpose(-1, -2)
            means.insert(0, torch.where(inside, mean, m[:, t]))
            covs.insert(0, torch.where(inside[..., None], 0.5 * (cov + cov.transpose(-1, -2)), P[:, t]))
        return torch.stack(means, 1), torch.stack(covs, 1)

    def exact_guide(self, x, lengths=None):
        """q(z_{1:T} | x) = p(z_{1:L} | x_{1:L}), sampled backwards through the smoother's kernels."""
        mask = step_mask(x, lengths)
        last = mask.sum(1) - 1
        with torch.no_grad():
            m, P, _, J, cov = self.backward_kernels(x, lengths)
        A = self.A.detach().to(x)
        z = None
        with pyro.plate("sequences", x.shape[0]):
            for t in range(x.shape[1] - 1, -1, -1):
                at_end = (t >= last)[:, None]
                if z is None:
                    loc = m[:, t]
                else:
                    loc = torch.where(at_end, m[:, t], m[:, t] + (J[:, t] @ (z - m[:, t] @ A.T)[..., None])[..., 0])
                scale = torch.linalg.cholesky(torch.where(at_end[..., None], P[:, t], cov[:, t]))
                z = pyro.sample(f"z_{t}", dist.MultivariateNormal(loc, scale_tril=scale).mask(mask[:, t]))

    def marginal_guide(self, x, lengths=None):
        """q(z_{1:T} | x) = Π_t p(z_t | x_{1:L}): the smoothing marginals, independent across time."""
        mask = step_mask(x, lengths)
        with torch.no_grad():
            means, covs = self.smoother(x, lengths)
        with pyro.plate("sequences", x.shape[0]):
            for t in range(x.shape[1]):
                pyro.sample(f"z_{t}", dist.MultivariateNormal(means[:, t], covariance_matrix=covs[:, t])
                            .mask(mask[:, t]))


class Bootstrap:
    """The bootstrap particle filter's proposal (Gordon et al. 1993): z_t from the model's own transition,
    so each incremental weight is p(x_t | z_t)."""

    def __init__(self, lgssm: LGSSM):
        self.lgssm = lgssm

    def init(self, state: dict, x) -> None:
        pass

    def step(self, state: dict, x_t) -> None:
        m, z_prev = self.lgssm, state["z"]
        loc = x_t.new_zeros(m.A.shape[0]) if z_prev is None else z_prev @ m.A.T
        scale = x_t.new_full((m.A.shape[0],), m.init_scale) if z_prev is None else m.log_q.exp()
        with pyro.plate("sequences", x_t.shape[0]):
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))


class LinearProposal(nn.Module):
    """A learned proposal q_φ(z_t | z_{t−1}, x_t) = N(W z_{t−1} + V x_t + c, diag σ²) (z_0 = 0)."""

    def __init__(self, x_dim: int, z_dim: int):
        super().__init__()
        self.W, self.V = nn.Linear(z_dim, z_dim, bias=False), nn.Linear(x_dim, z_dim)
        self.log_scale = nn.Parameter(torch.zeros(z_dim))

    def init(self, state: dict, x) -> None:
        pass

    def step(self, state: dict, x_t) -> None:
        pyro.module("proposal", self)
        z_prev = state["z"]
        loc = self.V(x_t) + (0 if z_prev is None else self.W(z_prev))
        with pyro.plate("sequences", x_t.shape[0]):
            pyro.sample("z", dist.Normal(loc, self.log_scale.exp()).to_event(1))

