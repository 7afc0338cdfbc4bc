"""What every objective is: a Pyro loss for SVI and the bound it estimates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ppl_vae.evaluation.evaluate import bound as bound_per_point


def same_lr(param_name: str) -> float:
    return 1.0


@dataclass
class Objective:
    """A Pyro loss for SVI and the bound it estimates.

    ``loss.loss_and_grads`` (what ``SVI.step`` calls) returns −Σ_n bound(x_n) over the
    mini-batch, so the trainer reports −loss / batch size as the training bound.
    ``bound`` maps per-data-point log weights [K, N] to the bound per data point [N].
    ``lr_factor(param_name)`` scales the learning rate of a parameter, e.g. a learned
    baseline that trains on its own rate. ``recordable``: the training step of ``loss`` can be
    recorded as a graph of torch ops and replayed (same estimator, static shapes only), which the
    trainer does when the run allows it (:mod:`ppl_vae.inference.record`).
    """

    name: str
    loss: object  # a pyro.infer.ELBO, or any object with loss / loss_and_grads as SVI expects
    particles: int  # particles per data point, in training and in the test bound
    bound: Callable[[torch.Tensor], torch.Tensor]
    lr_factor: Callable[[str], float] = same_lr
    recordable: bool = False
    nesting: int = 1  # plates the program nests, the data plate included (checks.nested sets it)
    vectorized: bool = True  # particles drawn at once; False: one pass each (checks.sequential sets it)

    def test_bound(self, model, guide, x: torch.Tensor, given_globals: bool = False, **inputs) -> torch.Tensor:
        """The bound per data point on held-out ``x`` (with its named inputs), without gradients;
        ``given_globals``: given the global latents β ~ q(β) (see :func:`~ppl_vae.inference.weights.log_weights`).

        Objectives whose bound is not a function of importance weights (e.g. exact
        enumeration of discrete latents) override this.
        """
        return bound_per_point(model, guide, x, self.bound, self.particles, inputs=inputs, given_globals=given_globals,
                               max_plate_nesting=self.nesting, vectorized=self.vectorized)
