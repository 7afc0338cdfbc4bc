"""Pyro's distribution checks, once over the data, instead of at every step.

With validation on, every distribution Pyro builds checks its parameters against their
constraints and every observed value against its support, each a host sync; a JIT-compiled
loss checks nothing. So the checks run in one pass over the points (one particle each) before
training and before an evaluation, and the many steps after run without them: a binary
likelihood on grey-level pixels, a negative scale from an untransformed network output, are
refused there with the points and the site named. (``--validate`` keeps them at every step.)
"""

from __future__ import annotations

import pyro
import torch
from pyro import poutine

from ppl_vae.data import batch_inputs, given_rows
from ppl_vae.device import forked_rng
from ppl_vae.errors import user_code

VALIDATED_POINTS = 1000  # points per chunk of the pass over the data


def valid_data(model, guide, data, inputs: dict, test_inputs: dict | None = None, first_epoch=None) -> None:
    """The checks over every training point, as the first epoch binarizes it (``first_epoch``, when the
    caller has it), and every test point (unless ``test_inputs`` is None: a guide that fits its own test
    points), before training."""
    x = data.train_epoch(0) if first_epoch is None else first_epoch
    valid_points(model, guide, x, inputs, "training", with_idx=True)
    if test_inputs is not None and data.x_test is not None:
        valid_points(model, guide, data.x_test, test_inputs, "test")


def valid_points(model, guide, x, inputs: dict, split: str, with_idx: bool = False) -> None:
    """:func:`valid_data` for the points ``x`` (and their named inputs; ``with_idx``: the model and guide
    get their indices, as in training): a :class:`UsageError` naming the points and what failed.
    Without gradients, with the random stream put back."""
    given = given_rows(inputs)
    groups = [torch.arange(x.shape[0], device=x.device)] if given is None else \
        [torch.nonzero(given.to(x.device) == flag).squeeze(1) for flag in (True, False)]  # labelled, unlabelled
    with torch.no_grad(), forked_rng(x), pyro.validation_enabled(True):
        for rows in (part for group in groups for part in group.split(VALIDATED_POINTS)):
            xb, ib = x[rows], batch_inputs(inputs, rows)
            args = (xb, rows) if with_idx else (xb,)
            first, last = int(rows[0]), int(rows[-1])
            with user_code(f"the model and guide fail Pyro's checks on {split} points {first}–{last}",
                           "; fix the data or the program"):
                guide_tr = poutine.trace(guide).get_trace(*args, **ib)
                poutine.trace(poutine.replay(model, trace=guide_tr)).get_trace(*args, **ib).log_prob_sum()
