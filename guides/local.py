"""The non-amortized guide: one mean-field Gaussian q_i(z) = N(m_i, diag s_i²) per data point.

There is no encoder: the variational parameters (m_i, s_i), i = 1 … n, are a table, and a
mini-batch uses the rows of its data indices ``idx``. Its ELBO is the per-point bound
L(θ, q_i) = E_{q_i}[log p_θ(x_i | z)] − KL(q_i ‖ p(z)), so the best q_i for each point gives
the tightest bound a diagonal Gaussian can give — the reference that measures the
amortization gap of an encoder (Cremer, Li & Duvenaud 2018).

Gradients reach the table as sparse rows, and ``ppl_vae.inference.trainer`` steps such a parameter with
``torch.optim.SparseAdam``: a step moves the rows of the batch it saw and no other (dense
Adam would keep moving every row already visited by its momentum).

The data plate is the batch's own (size ``x.shape[0]``, no subsampling scale), as in the
models, whose likelihood also counts the batch only.

A table holds q only for the points it was made for. For new points (a test set) there is
no q: :meth:`LocalGaussian.test_bound` makes a fresh table for them, starting at the prior,
and :meth:`LocalGaussian.refine` maximizes its ELBO with θ fixed until it converges — the
E-step of variational EM run to convergence. The test bound of a local-guide run is the
objective's bound under these refitted q_i: the best this family does on new points, at the
cost of an optimization per point (what an encoder amortizes).
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from ppl_vae.errors import UsageError
from ppl_vae.inference.chunks import chunk_sizes
from ppl_vae.inference.weights import log_weights

from ppl_vae.models.mlp import MIN_SCALE as _MIN_SCALE

_PRIOR_RAW_SCALE = math.log(math.e - 1)  # softplus⁻¹(1): rows start at the prior N(0, I)
LR_FACTOR = 50.0


class LocalGaussian(nn.Module):
    latent_sites = ("z",)
    lacks: dict[str, str] = {}
    point_mass = False

    @classmethod
    def from_config(cls, config, data):
        return cls(data.x_train.shape[0], config.pair.latent_dim)

    def __init__(self, n: int, latent_dim: int, loc: torch.Tensor | None = None,
                 scale: torch.Tensor | None = None):
        """A table of n rows starting at ``loc``/``scale`` [n, latent_dim] (default: N(0, I))."""
        super().__init__()
        self.latent_dim = latent_dim
        loc = torch.zeros(n, latent_dim) if loc is None else loc.detach().clone()
        raw = (torch.full((n, latent_dim), _PRIOR_RAW_SCALE) if scale is None
               else (scale.detach() - _MIN_SCALE).clamp_min(1e-6).expm1().log())  # softplus⁻¹
        self.loc = nn.Parameter(loc)
        self.raw_scale = nn.Parameter(raw.to(loc))
        self.loc.sparse_grad = self.raw_scale.sparse_grad = True  # the trainer steps them with SparseAdam

    def lr_factor(self, param_name: str) -> float:
        """The trainer's learning-rate factor: a row gets one step per epoch where a network
        weight gets one per batch, so the table trains at ``LR_FACTOR`` × the run's rate."""
        return LR_FACTOR if param_name.startswith("local.") else 1.0

    @property
    def n(self) -> int:
        return self.loc.shape[0]

    def rows(self, idx: torch.Tensor | None, batch: int):
        """(m, s) of rows ``idx`` (sparse gradients), or of the whole table when idx is None."""
        if idx is None:
            if batch != self.n:
                raise UsageError(f"the local guide holds q only for its own {self.n} data points, not for new ones; "
                                 f"the test_bound in its metrics.jsonl is under q refitted per test point.")
            return self.loc, F.softplus(self.raw_scale) + _MIN_SCALE
        loc = F.embedding(idx, self.loc, sparse=True)
        return loc, F.softplus(F.embedding(idx, self.raw_scale, sparse=True)) + _MIN_SCALE

    def dist(self, x: torch.Tensor, idx: torch.Tensor | None = None) -> dist.Distribution:
        loc, scale = self.rows(idx, x.shape[0])
        return dist.Normal(loc, scale).to_event(1)

    def sample(self, x: torch.Tensor, idx=None):
        """The guide without registering the table in Pyro's parameter store."""
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", self.dist(x, idx))

    def guide(self, x: torch.Tensor, idx=None):
        pyro.module("local", self)
        self.sample(x, idx)

    def test_bound(self, objective, model, x: torch.Tensor, refine_particles: int = 1) -> torch.Tensor:
        """``objective``'s bound per point of ``x`` [N], each under its own q refitted from the prior.

        ``x`` is split in the chunks ``objective.test_bound`` uses (:mod:`ppl_vae.inference.chunks`), and
        each chunk gets a fresh table, refined with θ fixed (one particle per step: this runs
        every epoch), as the guide of its points.
        """
        batch, _ = chunk_sizes(x.shape[0], x[0].numel() * objective.particles, 1)
        bounds = []
        for xb in x.split(batch):
            q = LocalGaussian(xb.shape[0], self.latent_dim).to(xb.device)
            q.refine(model, xb, particles=refine_particles)
            bounds.append(objective.test_bound(model, q.sample, xb))
        return torch.cat(bounds)

    def refine(self, model, x: torch.Tensor, *, particles: int = 10, lr: float = 0.05, max_steps: int = 3000,
               window: int = 50, tol: float = 0.01, decays: int = 3) -> list[float]:
        """Maximize Σ_i L(θ, q_i) over this table with θ fixed (Adam), until it converges.

        Every ``window`` steps the mean ELBO per point over the window is compared with the
        previous window's; when it rose by less than ``tol`` nats the learning rate is divided
        by 5 (a constant rate leaves q jittering around its optimum by the gradient noise), and
        at the plateau after ``decays`` such reductions, or after ``max_steps``, it stops.
        Returns the window means. Only this table gets gradients; the model's parameters are
        untouched. Rows are independent problems, so refining them together gives each the
        steps it would get alone (Adam is elementwise).
        """
        return climb([self.loc, self.raw_scale], lambda: log_weights(model, self.sample, x, particles=particles).mean(0),
                     lr=lr, max_steps=max_steps, window=window, tol=tol, decays=decays)


def climb(params: list, elbo, *, lr: float, max_steps: int = 3000, window: int = 50, tol: float = 0.01,
          decays: int = 3) -> list[float]:
    """Adam on ``params`` up the ELBO (``elbo()``: per point [N], or one value) until it converges, with
    the schedule of :meth:`LocalGaussian.refine`; returns the window means of the mean ELBO per point."""
    optim = torch.optim.Adam(params, lr=lr)
    history, total, plateaus = [], 0.0, 0
    for step in range(1, max_steps + 1):
        value = elbo()
        grads = torch.autograd.grad(-value.sum(), params, allow_unused=True)
        for p, g in zip(params, grads):
            p.grad = g
        optim.step()
        total = total + value.detach().mean()
        if step % window:
            continue
        history.append(total.item() / window)  # one host sync per window
        total = 0.0
        if len(history) > 1 and history[-1] - history[-2] < tol:
            plateaus += 1
            if plateaus > decays:
                break
            for group in optim.param_groups:
                group["lr"] /= 5
    return history
