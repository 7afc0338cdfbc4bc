"""The numerical-fault guard: a step whose loss or gradient is not finite moves nothing.

:class:`GuardedSVI` is ``pyro.infer.SVI.step`` with one difference: after ``loss_and_grads`` it
checks the loss and every gradient, and only then lets the optimizer move the parameters.
A fault raises :class:`NonFinite`; the trainer (:mod:`ppl_vae.inference.trainer`) then rolls back to its
last checkpoint with a smaller learning rate.
"""

from __future__ import annotations

import contextlib
import math
import re

import pyro
import torch
from pyro import poutine
from pyro.infer.util import torch_item


class NonFinite(Exception):
    """A step's loss or gradient was not finite; no parameter moved."""


@contextlib.contextmanager
def invalid_values_as_faults():
    """Turn torch.distributions' "found invalid values" errors into :class:`NonFinite`.

    With Pyro's validation on, a NaN reaching a distribution's parameter or a sample raises
    that ``ValueError`` before any loss exists; it is the same numerical fault.
    """
    try:
        yield
    except ValueError as e:
        if "found invalid values" not in str(e):
            raise
        site = re.search(r"at site '([^']+)'", str(e))
        what = f"a value at sample site {site.group(1)!r}" if site else "a distribution's parameter"
        raise NonFinite(f"{what} was NaN or outside its support") from e


class GuardedSVI:
    """``SVI`` whose step checks the loss and every gradient before the optimizer moves.

    Like ``SVI.step``, but a non-finite loss or gradient raises :class:`NonFinite` and
    leaves the parameters and the optimizer's state as they were. ``optim`` is called with
    the set of parameters the loss touched: a ``pyro.optim.PyroOptim``, or the run's one
    :class:`~ppl_vae.inference.optim.Optimizer`. After the step every gradient is None, so
    an optimizer over more parameters moves only these. The check costs one host sync per
    step, on top of the one ``SVI.step`` makes for the loss.
    """

    def __init__(self, model, guide, optim, loss):
        self.model, self.guide, self.optim, self.loss = model, guide, optim, loss

    def step(self, *args, **kwargs):
        with poutine.trace(param_only=True) as param_capture, invalid_values_as_faults():
            loss = self.loss.loss_and_grads(self.model, self.guide, *args, **kwargs)
        params = {site["value"].unconstrained() for site in param_capture.trace.nodes.values()}
        losses = tuple(map(torch_item, loss if isinstance(loss, tuple) else (loss,)))
        fault = self.fault(losses, params)
        if fault is not None:
            for p in params:
                p.grad = None
            raise NonFinite(fault)
        self.optim(params)
        for p in params:
            p.grad = None
        return losses if isinstance(loss, tuple) else losses[0]

    @staticmethod
    def fault(losses, params) -> str | None:
        """What is not finite: the loss, a gradient, or nothing (None)."""
        if not all(map(math.isfinite, losses)):
            return "the loss was not finite"
        grads = [dense_values(p.grad).sum() for p in params if p.grad is not None]  # finite iff every entry is
        if grads and not torch.isfinite(torch.stack(grads)).all():
            bad = next(p for p in params if p.grad is not None and not torch.isfinite(dense_values(p.grad)).all())
            return f"the gradient of {pyro.get_param_store().param_name(bad)} was not finite"
        return None


def dense_values(grad: torch.Tensor) -> torch.Tensor:
    """The stored entries of a gradient: all of a dense one, the non-zero rows of a sparse one."""
    return grad.coalesce().values() if grad.is_sparse else grad
