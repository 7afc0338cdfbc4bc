"""Variational EM: alternate E-steps on the guide with M-steps on the model.

For one mini-batch x_B, with the bound L(θ, φ) of the run's objective (the ELBO by default),

    E-step, N times:  φ ← φ + Adam(∇_φ L(θ, φ; x_B))      θ fixed
    M-step, once:     θ ← θ + Adam(∇_θ L(θ, φ; x_B))      φ fixed

With the non-amortized guide (``--guide local``) the E-steps move only the batch's own
q_i — the variational EM of the lectures, stochastic over mini-batches (cf. Hoffman et al.
2013); with an encoder they are extra inference-network steps per model step (He et al.
2019). Joint SVI (``--schedule joint``) instead takes one step on (θ, φ) together.
Selected by ``ppl-vae train --schedule vem --e-steps N``.
"""

from __future__ import annotations

import pyro
from pyro import poutine
from ppl_vae.inference.guard import GuardedSVI
from ppl_vae.inference.trainer import Trainer


def drop_grads() -> None:
    """Forget the gradients of every parameter; the frozen side of a step still receives one."""
    for _, p in pyro.get_param_store().named_parameters():
        p.grad = None


class VEMTrainer(Trainer):
    """:class:`~ppl_vae.inference.trainer.Trainer` whose step is N E-steps and one M-step on the batch."""

    def __init__(self, *args, e_steps: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        self.e_steps = e_steps
        self.config.update(schedule="vem", e_steps=e_steps)

    def _new_optimizer(self) -> None:
        """Joint SVI's optimizer, shared by an E-step SVI and an M-step SVI (rebuilt on rollbacks).

        Hiding a side's parameters from SVI keeps them out of its step; both share one
        optimizer, so checkpoints hold the state of every parameter, and both are guarded
        against non-finite losses and gradients."""
        super()._new_optimizer()
        frozen = lambda fn: poutine.block(fn, hide_types=["param"])  # noqa: E731
        self.e_svi = GuardedSVI(frozen(self.model), self.guide, self.optim, loss=self.objective.loss)
        self.m_svi = GuardedSVI(self.model, frozen(self.guide), self.optim, loss=self.objective.loss)

    def train_step(self, x, idx) -> float:
        """N E-steps, then one M-step; returns the M-step's loss, −Σ bound after the E-steps."""
        for _ in range(self.e_steps):
            self.e_svi.step(x, idx)
            drop_grads()
        loss = self.m_svi.step(x, idx)
        drop_grads()
        return loss
