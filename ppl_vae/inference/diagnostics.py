"""Gradient diagnostics: how noisy is an objective's gradient estimator at fixed parameters?

For fixed θ and φ, M independent gradient estimates g⁽¹⁾ … g⁽ᴹ⁾ (one ``loss_and_grads``
each, on the same mini-batch) give, for every scalar parameter i, the sample mean ḡ_i and
variance s_i², and the signal-to-noise ratio

    SNR_i = |E g_i| / std g_i ≈ |ḡ_i| / s_i          (Rainforth et al. 2018).

They are summarized separately for the guide's parameters φ and the model's parameters θ:
Rainforth et al. show that the IWAE guide gradient's SNR falls like 1/√K while the model's
rises like √K; DReG (Tucker et al. 2019) repairs the guide's. Nothing is optimized: the
gradients are read and cleared, and state the loss rewrites in the param store (the running
average of a score-function baseline) is put back after every estimate, so the M estimates
are independent draws at the same state. An exact gradient (``enum``'s, which sums every discrete
latent out) has variance 0 and SNR ∞.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro
import torch
from pyro import poutine

from ppl_vae.inference.objectives import Objective
from ppl_vae.inference.objectives.weighted import Particles
from ppl_vae.pair import as_pyro_callable


@dataclass
class ParamStats:
    """Per-element mean and variance of one parameter's gradient estimates."""

    name: str
    group: str  # "guide", "model", or "other" (e.g. a learned baseline)
    mean: torch.Tensor
    var: torch.Tensor

    @property
    def snr(self) -> torch.Tensor:
        """|E g| / std g per element; NaN where both are zero (an unused element)."""
        return self.mean.abs() / self.var.sqrt()


def gradient_stats(objective, model, guide, *args, samples: int = 100, **kwargs) -> list[ParamStats]:
    """Mean and variance of ``samples`` gradient estimates of −Σ_n bound at the current parameters.

    ``objective`` is an :class:`~ppl_vae.inference.objectives.Objective` or a Pyro loss; ``args``,
    ``kwargs`` are what the model and guide take (a mini-batch ``x``, ...). One estimate is
    made and dropped first, so that parameters the loss creates lazily exist.
    """
    loss = objective.loss if isinstance(objective, Objective) else objective
    model, guide = as_pyro_callable(model, "model"), as_pyro_callable(guide, "guide")
    store = pyro.get_param_store()
    at_once = objective.vectorized if isinstance(objective, Objective) else getattr(loss, "at_once", True)
    # with gradients: the roles need them; one pass, as the objective draws (at once, or one at a time)
    particles = Particles(model, guide, args[0], args[1:], kwargs, particles=1, vectorized=at_once)
    groups = {store.param_name(t): group for group in ("model", "guide") for t in particles.params[group]}
    _reset(store, {})
    loss.loss_and_grads(model, guide, *args, **kwargs)
    state = {name: (param, store[name].detach()) for name, param in store.named_parameters()}
    means, squares = {}, {}  # Welford's running mean and sum of squared deviations: an exact gradient has var 0
    for k in range(1, samples + 1):
        _reset(store, state)
        with poutine.trace(param_only=True) as capture:
            loss.loss_and_grads(model, guide, *args, **kwargs)
        for name, site in capture.trace.nodes.items():
            param = site["value"].unconstrained()
            g = (param.grad if param.grad is not None else torch.zeros_like(param)).detach().double()
            delta = g - means.get(name, 0)
            means[name] = means.get(name, 0) + delta / k
            squares[name] = squares.get(name, 0) + delta * (g - means[name])
    _reset(store, state)
    return [ParamStats(name, groups.get(name, "other"), mean, squares[name] / max(samples - 1, 1))
            for name, mean in means.items()]


def _reset(store, state: dict) -> None:
    """Clear every gradient, and put back the parameters the loss replaced since ``state``."""
    for name, param in list(store.named_parameters()):
        param.grad = None
        if name in state and param is not state[name][0]:
            store[name] = state[name][1]


def summarize(stats: list[ParamStats]) -> dict:
    """Per group: mean and median SNR over its scalar parameters, and their mean gradient variance."""
    out = {}
    for group in ("guide", "model"):
        members = [s for s in stats if s.group == group]
        if not members:  # a pair whose model and guide share every parameter has no θ of its own
            out[group] = {"snr": math.nan, "snr_median": math.nan, "variance": math.nan, "size": 0}
            continue
        snr = torch.cat([s.snr.flatten() for s in members])
        snr = snr[~snr.isnan()]
        var = torch.cat([s.var.flatten() for s in members])
        out[group] = {"snr": snr.mean().item() if snr.numel() else math.nan,
                      "snr_median": snr.median().item() if snr.numel() else math.nan,
                      "variance": var.mean().item(), "size": var.numel()}
    return out
