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
a dict whose tensors [K, B, ...] lead with the particles' dimension (:mod:`ppl_vae.steps` says what
else it holds). Sites are named by time (``f"z_{state['t']}"``), so that :func:`ppl_vae.steps.unroll`
runs the same steps as one whole-sequence program, which the ELBO, the importance-weighted bounds and
``evaluate`` take. The sites of one step are traced, the
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
from ppl_vae.pair import Adapted, innermost
from ppl_vae.steps import alive_steps

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


def is_stepper(obj) -> bool:
    return callable(getattr(obj, "init", None)) and callable(getattr(obj, "step", None))


def stepper_of(program, depth: int = 3):
    """The object in step form (``init``, ``step``) that ``program`` is, is a method of, or calls through the
    trainer's wrappers (:func:`ppl_vae.pair.callables`, a :class:`~ppl_vae.pair.Pair`'s program); else None."""
    if isinstance(program, Adapted):
        program = program.program
    for obj in (program, getattr(program, "__self__", None), innermost(program)):
        if is_stepper(obj):
            return obj
    if depth > 0:
        for fn in (program, innermost(program)):
            for cell in getattr(fn, "__closure__", None) or ():
                try:
                    found = stepper_of(cell.cell_contents, depth - 1)
                except ValueError:  # a cell not yet filled
                    continue
                if found is not None:
                    return found
    return None


def steppers(model, guide, objective: str = "the SMC bound"):
    """(model, guide) in step form, or a UsageError naming the one that is not."""
    found = stepper_of(model), stepper_of(guide)
    for role, program, stepper in (("model", model, found[0]), ("guide", guide, found[1])):
        if stepper is None:
            name = type(getattr(program, "program", program)).__name__
            raise UsageError(f"{objective} resamples particles between time steps, so the {role} must be in the step "
                             f"form of Pyro's SMCFilter, with init(state, x) and step(state, x_t), and this {role} "
                             f"({name}) has no such methods; write its time step so, or train it with iwae, the bound "
                             f"of the whole sequence.")
    return found


def smc_log_marginal(model, guide, x: torch.Tensor, particles: int, lengths: torch.Tensor | None = None,
                     resample: bool = True, who: str = "the SMC bound") -> torch.Tensor:
    """log p̂(x_{1:L}) per sequence [B] from one particle filter with ``particles`` particles (see the module
    doc); x is [B, T, ...]. ``resample=False`` gives the IWAE bound of the sequence, for comparison. The
    model and guide are in step form, or methods of (or wrappers around) objects in it; else a UsageError
    says so, in the words of ``who`` asked.
    Differentiable through the proposal's reparameterized samples; the ancestors are constants."""
    model, guide = steppers(model, guide, who)
    b, steps, k = x.shape[0], x.shape[1], particles
    alive = alive_steps(x, lengths)
    state: dict = {"lengths": lengths}
    with pyro.plate("particles", k, dim=PARTICLE_DIM):
        guide.init(state, x)
        model.init(state, x)
    log_w_sum = x.new_zeros(k, b, dtype=torch.get_default_dtype() if not x.is_floating_point() else x.dtype)
    log_p = log_w_sum.new_zeros(b)
    for t in range(steps):
        state["t"] = t
        with pyro.plate("particles", k, dim=PARTICLE_DIM):
            proposed = dict(state)  # the guide's own copy: both programs read the state before the step
            guide_tr = poutine.trace(guide.step).get_trace(proposed, x[:, t])
            model_tr = poutine.trace(poutine.replay(model.step, trace=guide_tr)).get_trace(state, x[:, t])
        state = {**proposed, **state}
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
