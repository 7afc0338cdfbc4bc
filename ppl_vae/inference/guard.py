"""The numerical-fault guard: a step whose loss or gradient is not finite moves nothing.

:class:`GuardedSVI` is ``pyro.infer.SVI.step`` with one difference: after ``loss_and_grads`` it
checks the loss and every gradient, and only then lets the optimizer move the parameters.
A fault raises :class:`NonFinite`; the trainer (:mod:`ppl_vae.inference.trainer`) then rolls back to its
last checkpoint with a smaller learning rate.

The check is one reduction over all gradients, read back together with the loss where the loss
stays on the device (a recorded step, the importance-weighted objectives): one host sync per
step, the one that reading the loss costs anyway. Training steps run without Pyro's distribution
checks (they cost a sync per distribution); when a step is not finite, the guard reruns its loss
eagerly with them on, so the fault is reported at the site where it arose.
"""

from __future__ import annotations

import contextlib
import math
import re

import pyro
import torch
from pyro import poutine
from pyro.infer.util import is_validation_enabled


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
    an optimizer over more parameters moves only these. ``eager``: the loss to diagnose a
    fault with, when ``loss`` is a recorded step (default: ``loss``). ``sync(params, loss)``: in a
    data-parallel run, sums the ranks' gradients (in place) and losses before the check
    (:meth:`ppl_vae.parallel.World.sum_step`), and returns the summed loss.
    """

    def __init__(self, model, guide, optim, loss, eager=None, sync=None):
        self.model, self.guide, self.optim, self.loss = model, guide, optim, loss
        self.eager = eager if eager is not None else loss
        self.sync = sync
        self.touched: set | None = None  # the parameters the last step touched

    def step(self, *args, **kwargs):
        early = None  # a fault found before the loss existed (Pyro's checks on)
        with poutine.trace(param_only=True) as param_capture:
            try:
                with invalid_values_as_faults():
                    loss = backward(self.loss, self.model, self.guide, *args, **kwargs)
            except NonFinite as e:
                if self.sync is None:
                    raise
                early, loss = str(e), float("nan")  # the other ranks still wait for this rank's sum
        params = {site["value"].unconstrained() for site in param_capture.trace.nodes.values()}
        params.update(getattr(self.loss, "touched", ()))  # a recorded step reads its parameters without pyro.param
        if self.sync is not None:  # data-parallel: the ranks' sums, and every rank sees the same verdict
            if early is not None:
                params = self.touched or {p for _, p in pyro.get_param_store().named_parameters()}
            loss = self.sync(params, loss)
            self.touched = params
        losses, fault = self.checked(loss, params)
        fault = early or fault
        if fault is not None:
            for p in params:
                p.grad = None
            raise NonFinite(self.diagnosed(args, kwargs) or fault)
        self.optim(params)
        for p in params:
            p.grad = None
        return losses if isinstance(loss, tuple) else losses[0]

    @staticmethod
    def checked(loss, params) -> tuple[tuple[float, ...], str | None]:
        """(the losses as floats, what is not finite: the loss, a gradient, or None), from one read-back."""
        losses = loss if isinstance(loss, tuple) else (loss,)
        grads = [dense_values(p.grad).sum() for p in params if p.grad is not None]  # finite iff every entry is
        checks = [torch.stack(grads).sum()] if grads else []
        device = checks[0].device if checks else "cpu"
        on_device = [torch.as_tensor(v).detach().reshape(()).to(device, torch.float64) for v in losses]
        checks = [c.to(torch.float64) for c in checks]
        values = torch.stack(on_device + checks).tolist() if on_device or checks else []
        losses, total = tuple(values[:len(losses)]), values[len(losses):]
        if not all(map(math.isfinite, losses)):
            return losses, "the loss was not finite"
        if total and not math.isfinite(total[0]):
            bad = next((p for p in params if p.grad is not None and not torch.isfinite(dense_values(p.grad)).all()),
                       None)
            if bad is None:  # every entry finite, their sum beyond float range
                return losses, "the gradients' sum overflowed"
            return losses, f"the gradient of {pyro.get_param_store().param_name(bad)} was not finite"
        return losses, None

    def diagnosed(self, args, kwargs) -> str | None:
        """Where a fault arose, from the eager loss rerun with Pyro's distribution checks on, or None."""
        if self.eager is self.loss and is_validation_enabled():
            return None  # the step itself ran with the checks
        try:
            with torch.no_grad(), pyro.validation_enabled(True), invalid_values_as_faults():
                self.eager.loss(self.model, self.guide, *args, **kwargs)
        except NonFinite as e:
            return str(e)
        except Exception:  # noqa: BLE001 — only a diagnosis; the fault stands as found
            return None
        return None


def backward(loss, model, guide, *args, **kwargs):
    """``loss.loss_and_grads``, returning the loss as a tensor on the device where the loss allows it, so
    the guard reads it back with the gradients' check in one sync (Pyro's own return ``.item()``)."""
    if hasattr(loss, "backward"):  # a recorded step, the importance-weighted objectives (WeightedLoss)
        return loss.backward(model, guide, *args, **kwargs)
    return loss.loss_and_grads(model, guide, *args, **kwargs)


def dense_values(grad: torch.Tensor) -> torch.Tensor:
    """The stored entries of a gradient: all of a dense one, the non-zero rows of a sparse one."""
    return grad.coalesce().values() if grad.is_sparse else grad
