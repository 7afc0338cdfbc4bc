"""The filtering variational objective (FIVO; Maddison et al. 2017; AESMC, Le et al. 2018; VSMC,
Naesseth et al. 2018): the log of a particle filter's estimate of p_θ(x_{1:T}), per sequence,

    L_K^SMC(x) = E[log p̂_K(x_{1:T})],   p̂_K = Π_t (1/K) Σ_k w_t^k,
    w_t^k = p_θ(z_t^k, x_t | z_{t−1}^{a_k}) / q_φ(z_t^k | z_{t−1}^{a_k}, x),

with the K particles resampled after every step (:mod:`ppl_vae.inference.smc`). p̂_K is unbiased, so
L_K^SMC ≤ log p(x) (Jensen), and it is tight as K → ∞. Trained by the reparameterized gradient of
log p̂_K with the resampling's score-function terms dropped, as the three papers do; the gradient is
biased for that reason, the bound it reports is not. The test bound is the same estimate with K
particles on held-out sequences. The program comes in the step form of Pyro's ``SMCFilter``
(:mod:`ppl_vae.steps`): a model and a guide with ``init(state, x)`` and ``step(state, x_t)``, the
sequences x [B, T, ...] and their ``lengths`` a named input.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyro
import torch

from ppl_vae.inference.objectives.base import Needs, Objective
from ppl_vae.inference.smc import smc_log_marginal


class FIVOLoss(pyro.infer.ELBO):
    """−Σ_n log p̂_K(x_n) over the batch's sequences, and its gradient (module doc); a ``pyro.infer.ELBO``
    that ``SVI`` takes, called as ``svi.step(x, lengths)`` or with ``lengths=`` by keyword."""

    name = "fivo"
    needs = Needs(guide=frozenset({"density"}), reparameterized=True,
                  local_latents="resamples each sequence's particles on their own", stepwise=True)

    def __init__(self, num_particles: int = 1):
        super().__init__(num_particles=num_particles)

    def _get_trace(self, model, guide, args, kwargs):
        raise NotImplementedError("FIVO traces one time step at a time (ppl_vae.inference.smc)")

    def differentiable_loss(self, model, guide, x, *args, lengths=None, **kwargs) -> torch.Tensor:
        lengths = args[0] if lengths is None and args and torch.is_tensor(args[0]) else lengths
        return -smc_log_marginal(model, guide, x, self.num_particles, lengths, who="the fivo objective").sum()

    def loss(self, model, guide, *args, **kwargs) -> float:
        with torch.no_grad():
            return self.differentiable_loss(model, guide, *args, **kwargs).item()

    def backward(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """The loss as a 0-dim tensor on the device, its gradient accumulated into the parameters."""
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return loss.detach()

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        return self.backward(model, guide, *args, **kwargs).item()


@dataclass
class SMCObjective(Objective):
    """An objective whose test bound is the particle filter's, not a function of importance weights."""

    def test_bound(self, model, guide, x: torch.Tensor, given_globals: bool = False, **inputs) -> torch.Tensor:
        return smc_log_marginal(model, guide, x, self.particles, inputs.get("lengths"))


def fivo(particles: int = 1) -> Objective:
    return SMCObjective("fivo", FIVOLoss(particles), particles, bound=None,
                        test_quantity="FIVO bound (particle filter)")
