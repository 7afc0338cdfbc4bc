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

from ppl_vae.steps import alive_steps, unroll


class LGSSM(nn.Module):
    """The model above with parameters A [k, k], C [d, k], log q [k], log r [d] and a fixed s₀."""

    # What the registry's compatibility check reads (ppl_vae.registry.check):
    latent_sites = ("z_t, one per time step",)
    enumerated = ()
    fit_methods = ("svi",)
    objectives = None
    continuous_data = True
    defaults = {"guide": "rnn", "objective": "elbo", "binarize": "none"}

    @classmethod
    def from_config(cls, config, data):
        return cls(data.x_shape[-1], config.pair.latent_dim)

    def __init__(self, x_dim: int, z_dim: int, init_scale: float = 1.0):
        super().__init__()
        self.A = nn.Parameter(0.9 * torch.eye(z_dim))
        self.C = nn.Parameter(torch.randn(x_dim, z_dim) / z_dim ** 0.5)
        self.log_q = nn.Parameter(torch.full((z_dim,), -1.0))
        self.log_r = nn.Parameter(torch.full((x_dim,), -1.0))
        self.init_scale = init_scale

    def model(self, x, lengths=None):
        """The whole sequences x [B, T, d]: :meth:`step` over time (:func:`~ppl_vae.steps.unroll`)."""
        unroll(self, x, lengths)

    def init(self, state: dict, x) -> None:
        state["z"] = None

    def step(self, state: dict, x_t) -> None:
        """Time step ``state["t"]``: z_t | z_{t−1} and x_t | z_t for a batch of sequences, z_{t−1} from ``state``."""
        pyro.module("lgssm", self)
        t = state["t"]
        with pyro.plate("sequences", x_t.shape[0]):
            z = pyro.sample(f"z_{t}", self.transition(state["z"], x_t))
            pyro.sample(f"x_{t}", dist.Normal(z @ self.C.T, self.log_r.exp()).to_event(1), obs=x_t)
        state["z"] = z

    def transition(self, z_prev, like) -> dist.Distribution:
        """p(z_t | z_{t−1}), or p(z_1) where ``z_prev`` is None, in ``like``'s dtype and device."""
        k = self.A.shape[0]
        if z_prev is None:
            return dist.Normal(like.new_zeros(k), like.new_full((k,), self.init_scale)).to_event(1)
        return dist.Normal(z_prev @ self.A.T, self.log_q.exp()).to_event(1)

    # -- exact answers -------------------------------------------------------------------

    def filter(self, x, lengths=None):
        """The Kalman filter: (log p(x_{1:L}) [B], filtered means [B, T, k] and covariances [B, T, k, k])."""
        k = self.A.shape[0]
        mask = alive_steps(x, lengths)
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
        last = alive_steps(x, lengths).sum(1) - 1
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
        mask = alive_steps(x, lengths)
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
        mask = alive_steps(x, lengths)
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

    def __call__(self, x, lengths=None):
        unroll(self, x, lengths)

    def init(self, state: dict, x) -> None:
        state["z"] = None

    def step(self, state: dict, x_t) -> None:
        with pyro.plate("sequences", x_t.shape[0]):
            state["z"] = pyro.sample(f"z_{state['t']}", self.lgssm.transition(state["z"], x_t))


class LinearProposal(nn.Module):
    """A learned proposal q_φ(z_t | z_{t−1}, x_t) = N(W z_{t−1} + V x_t + c, diag σ²) (z_0 = 0)."""

    def __init__(self, x_dim: int, z_dim: int):
        super().__init__()
        self.W, self.V = nn.Linear(z_dim, z_dim, bias=False), nn.Linear(x_dim, z_dim)
        self.log_scale = nn.Parameter(torch.zeros(z_dim))

    def forward(self, x, lengths=None):
        unroll(self, x, lengths)

    def init(self, state: dict, x) -> None:
        state["z"] = None

    def step(self, state: dict, x_t) -> None:
        pyro.module("proposal", self)
        z_prev = state["z"]
        loc = self.V(x_t) + (0 if z_prev is None else self.W(z_prev))
        with pyro.plate("sequences", x_t.shape[0]):
            state["z"] = pyro.sample(f"z_{state['t']}", dist.Normal(loc, self.log_scale.exp()).to_event(1))
