"""Sequential Monte Carlo bounds: FIVO / AESMC (Maddison et al. 2017; Le et al. 2018; Naesseth et al. 2018).

A particle filter with proposal q_φ(z_t | z_{<t}, x) estimates p_θ(x_{1:T}) without bias:

    p̂(x_{1:T}) = Π_t (1/K) Σ_k w_t^k,   w_t^k = p_θ(z_t^k, x_t | z_{t−1}^{a_k}) / q_φ(z_t^k | z_{t−1}^{a_k}, x),

with the K particles resampled (multinomially, by their normalized weights; ancestors a_k) after every
step, so E[log p̂] ≤ log p(x) (Jensen) is a bound, tighter than the IWAE bound of the same K for a
sequence, and tight as K → ∞. It trains by its reparameterized gradient, the resampling's own
score-function terms dropped, as the papers do (they add variance that swamps the signal); the
bound itself is unaffected. Sequences past their length (``lengths``) add nothing and are not
resampled.

Resampling must happen between time steps, so the program comes in the step form Pyro's
``SMCFilter`` uses: a model and a guide with ``init(state, x)`` and ``step(state, x_t)``, each step a
Pyro program over the batch of sequences (``pyro.plate`` over them) that reads and writes ``state``,
a dict of tensors whose leading dimension is the particles'. The sites of one step are traced, the
model replayed on the guide's; their log-densities per particle and sequence
(:func:`~ppl_vae.inference.weights.per_point`, the plate of sequences read from the step) are log w_t.
"""

from __future__ import annotations

import math

import pyro
import torch
from pyro import poutine

from ppl_vae.errors import UsageError
from ppl_vae.inference.weights import data_plate, per_point

PARTICLE_DIM = -2  # particles left of the plate of sequences (dim −1)


def _resampled(state: dict, ancestors: torch.Tensor) -> dict:
    """Every tensor of ``state`` [K, B, ...] taken along its particle dim at ``ancestors`` [K, B]."""
    out = {}
    for key, value in state.items():
        if torch.is_tensor(value) and value.dim() >= 2 and value.shape[:2] == ancestors.shape:
            index = ancestors.reshape(*ancestors.shape, *([1] * (value.dim() - 2))).expand_as(value)
            out[key] = value.gather(0, index)
        else:
            out[key] = value
    return out


def smc_log_marginal(model, guide, x: torch.Tensor, particles: int, lengths: torch.Tensor | None = None,
                     resample: bool = True) -> torch.Tensor:
    """log p̂(x_{1:L}) per sequence [B] from one particle filter with ``particles`` particles (see the module
    doc); x is [B, T, ...]. ``resample=False`` gives the IWAE bound of the sequence, for comparison.
    Differentiable through the proposal's reparameterized samples; the ancestors are constants."""
    for role, program in (("model", model), ("guide", guide)):
        if not (callable(getattr(program, "init", None)) and callable(getattr(program, "step", None))):
            raise UsageError(f"the SMC bound resamples between time steps, so the {role} must have init(state, x) "
                             f"and step(state, x_t) as Pyro's SMCFilter asks; {type(program).__name__} has not.")
    b, steps, k = x.shape[0], x.shape[1], particles
    alive = torch.ones(b, steps, dtype=torch.bool, device=x.device) if lengths is None else \
        torch.arange(steps, device=x.device) < lengths.to(x.device)[:, None]
    state: dict = {}
    with pyro.plate("particles", k, dim=PARTICLE_DIM):
        guide.init(state, x)
        model.init(state, x)
    log_w_sum = x.new_zeros(k, b, dtype=torch.get_default_dtype() if not x.is_floating_point() else x.dtype)
    log_p = log_w_sum.new_zeros(b)
    for t in range(steps):
        with pyro.plate("particles", k, dim=PARTICLE_DIM):
            guide_tr = poutine.trace(guide.step).get_trace(state, x[:, t])
            model_tr = poutine.trace(poutine.replay(model.step, trace=guide_tr)).get_trace(state, x[:, t])
        plate = data_plate(model_tr)
        log_w = (per_point(model_tr, k, b, plate=plate) - per_point(guide_tr, k, b, observed=False, plate=plate)) \
            * alive[:, t]
        if resample:
            log_p = log_p + (torch.logsumexp(log_w, 0) - math.log(k)) * alive[:, t]
            with torch.no_grad():
                picked = torch.multinomial(torch.softmax(log_w.detach(), 0).T, k, replacement=True).T  # [K, B]
                picked = torch.where(alive[:, t], picked, torch.arange(k, device=x.device)[:, None])
            state = _resampled(state, picked)
        else:
            log_w_sum = log_w_sum + log_w
    return log_p if resample else torch.logsumexp(log_w_sum, 0) - math.log(k)
