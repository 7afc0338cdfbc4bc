"""What every objective is: a Pyro loss for SVI and the bound it estimates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ppl_vae.inference.chunks import bound as bound_per_point


def same_lr(param_name: str) -> float:
    return 1.0


# What a guide can lack that an objective may need (a guide declares ``lacks = {capability: why}``):
GUIDE_CAPABILITIES = {
    "density": "a density q(z | x) to score or importance-weight with (a point mass has none)",
    "log_q_at_any_z": "log q(z | x) at a z it did not just draw, with φ held fixed (score, reweight, stop-gradient)",
    "closed_form_kl": "a closed-form KL(q ‖ p) to the model's prior",
    "prior_latents": "latents that are all the model's, each with a prior to draw from",
}


@dataclass(frozen=True)
class Needs:
    """What an objective needs of the program it trains and of the run, declared once by its factory.

    The registry, the checks (:mod:`ppl_vae.inference.checks`), data parallelism and the guides read
    these; nothing outside an estimator's module names it. ``guide``: capabilities of the guide
    (:data:`GUIDE_CAPABILITIES`). ``reparameterized``: it differentiates through every guide sample
    (no score-function term). ``local_latents``: its loss weights each data point on its own, said as
    a phrase ("weights particles per data point"), so a global latent is refused. ``batch_statistic``:
    its loss is a statistic of the whole mini-batch (the phrase says which), which shards do not add up
    to; ``min_batch``: the fewest points a mini-batch may have. ``running_state``: it keeps a state
    per mini-batch position (the phrase says which), so batches have one size and no shards.
    ``enumeration``: it exists to sum discrete latents out, and a pair with none to sum is refused.
    ``enumerates_guide``: it sums over a guide site marked for enumeration rather than sampling it;
    ``sums_guide``: over every discrete latent of the guide, marked or not.
    ``sums_out``: it sums out the model's sites marked for enumeration rather than sampling them.
    ``own_scales``: it honours scales the program sets itself (``poutine.scale``), as Pyro's ELBOs do.
    ``splits_roles``: it estimates the model's and the guide's gradients differently, so a parameter
    may not serve both. ``stepwise``: it resamples between time steps, so the model and the guide come in
    step form (``init``, ``step``: :mod:`ppl_vae.steps`)."""

    guide: frozenset = frozenset()
    reparameterized: bool = False
    local_latents: str | None = None
    batch_statistic: str | None = None
    min_batch: int = 1
    running_state: str | None = None
    enumeration: bool = False
    enumerates_guide: bool = False
    sums_guide: bool = False
    sums_out: bool = False
    own_scales: bool = False
    splits_roles: bool = False
    stepwise: bool = False


def is_discrete(fn) -> bool:
    """Whether a distribution's values are discrete (False for one that does not say: a custom density)."""
    try:
        return fn.support.is_discrete
    except (AttributeError, NotImplementedError):
        return False


# what a score function, a reweighting or a stopped gradient needs of the guide
AT_ANY_Z = frozenset({"density", "log_q_at_any_z"})
# how the importance-weighted objectives treat the data points: each has its own particles' weights
WEIGHTED = "weights particles per data point"


@dataclass
class Objective:
    """A Pyro loss for SVI and the bound it estimates.

    ``loss.loss_and_grads`` (what ``SVI.step`` calls) returns −Σ_n bound(x_n) over the
    mini-batch, so the trainer reports −loss / batch size as the training bound.
    ``bound`` maps per-data-point log weights [K, N] to the bound per data point [N].
    ``lr_factor(param_name)`` scales the learning rate of a parameter, e.g. a learned
    baseline that trains on its own rate. ``recordable``: the training step of ``loss`` can be
    recorded as a graph of torch ops and replayed (same estimator, static shapes only), which the
    trainer does when the run allows it (:mod:`ppl_vae.inference.record`). ``needs``: what it needs
    of the program and the run (:class:`Needs`); ``train_quantity``: what the training value is, in
    words, where it is not the bound (None: it is); ``test_quantity``: what the test bound is.
    """

    name: str
    loss: object  # a pyro.infer.ELBO, or any object with loss / loss_and_grads as SVI expects
    particles: int  # particles per data point, in training and in the test bound
    bound: Callable[[torch.Tensor], torch.Tensor]
    lr_factor: Callable[[str], float] = same_lr
    recordable: bool = False
    needs: Needs | None = None  # None: the loss's own declaration (``loss.needs``), else nothing needed
    train_quantity: str | None = None
    test_quantity: str = "bound"
    nesting: int = 1  # plates the program nests, the data plate included (checks.nested sets it)
    vectorized: bool = True  # particles drawn at once; False: one pass each (checks.sequential sets it)

    def __post_init__(self):
        if self.needs is None:
            self.needs = getattr(self.loss, "needs", Needs())

    def test_bound(self, model, guide, x: torch.Tensor, given_globals: bool = False, **inputs) -> torch.Tensor:
        """The bound per data point on held-out ``x`` (with its named inputs), without gradients;
        ``given_globals``: given the global latents β ~ q(β) (see :func:`~ppl_vae.inference.weights.log_weights`).

        Objectives whose bound is not a function of importance weights (e.g. exact
        enumeration of discrete latents) override this.
        """
        return bound_per_point(model, guide, x, self.bound, self.particles, inputs=inputs, given_globals=given_globals,
                               max_plate_nesting=self.nesting, vectorized=self.vectorized)
