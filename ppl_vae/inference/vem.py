"""Variational EM: alternate E-steps on the guide with M-steps on the model.

For one mini-batch x_B, with the bound L(θ, φ) of the run's objective (the ELBO by default),

    E-step, N times:  φ ← φ + Adam(∇_φ L(θ, φ; x_B))      θ fixed
    M-step, once:     θ ← θ + Adam(∇_θ L(θ, φ; x_B))      φ fixed

With the non-amortized guide (``--guide local``) the E-steps move only the batch's own
q_i — the variational EM of the lectures, stochastic over mini-batches (cf. Hoffman et al.
2013); with an encoder they are extra inference-network steps per model step (He et al.
2019). Joint SVI (``--schedule joint``) instead takes one step on (θ, φ) together.
Selected by ``ppl-vae train --schedule vem --e-steps N``; :class:`VEMStep` is the trainer's
step rule (:class:`ppl_vae.inference.trainer.Trainer`).
"""

from __future__ import annotations

import pyro
from pyro import poutine

from ppl_vae.inference.guard import GuardedSVI


def drop_grads() -> None:
    """Forget the gradients of every parameter; the frozen side of a step still receives one."""
    for _, p in pyro.get_param_store().named_parameters():
        p.grad = None


class VEMStep:
    """N E-steps, then one M-step, on each mini-batch."""

    def __init__(self, e_steps: int = 1):
        self.e_steps = e_steps

    def build(self, trainer) -> None:
        """An E-step SVI and an M-step SVI sharing the trainer's one optimizer (rebuilt on rollbacks).

        Hiding a side's parameters from SVI keeps them out of its step; both share one
        optimizer, so checkpoints hold the state of every parameter, and both are guarded
        against non-finite losses and gradients."""
        frozen = lambda fn: poutine.block(fn, hide_types=["param"])  # noqa: E731
        loss, sync = trainer.objective.loss, trainer.step_sync
        self.e_svi = GuardedSVI(frozen(trainer.model), trainer.guide, trainer.optim, loss=loss, sync=sync)
        self.m_svi = GuardedSVI(trainer.model, frozen(trainer.guide), trainer.optim, loss=loss, sync=sync)

    def __call__(self, x, idx, **inputs) -> float:
        """Returns the M-step's loss, −Σ bound after the E-steps."""
        for _ in range(self.e_steps):
            self.e_svi.step(x, idx, **inputs)
            drop_grads()
        loss = self.m_svi.step(x, idx, **inputs)
        drop_grads()
        return loss
