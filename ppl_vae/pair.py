"""Turning what a user passes as ``model`` and ``guide`` into Pyro callables.

A model is an ``nn.Module`` with a method ``model(x, ...)``, or the method itself, or any
plain Pyro callable; likewise a guide with ``guide(x, ...)``. Training passes each
mini-batch as ``(x, idx)``, where ``idx`` holds the batch's row indices in the training set
(non-amortized guides select their per-data-point parameters with it); callables that do
not take ``idx`` are called with ``x`` alone.
"""

from __future__ import annotations

import functools
import inspect

from torch import nn


def as_pyro_callable(obj, method: str):
    """``obj.<method>`` for a module that has it, else ``obj`` itself."""
    fn = getattr(obj, method, None)
    return fn if isinstance(obj, nn.Module) and callable(fn) else obj


def owning_module(obj) -> nn.Module | None:
    """The ``nn.Module`` whose parameters a model or guide uses, if there is one."""
    if isinstance(obj, nn.Module):
        return obj
    owner = getattr(obj, "__self__", None)  # a bound method such as vae.model
    return owner if isinstance(owner, nn.Module) else None


def innermost(fn):
    """The function that decorators wrap: through ``__wrapped__`` (functools.wraps, Pyro's handlers on
    functions) and through the ``functools.partial`` Pyro makes of a decorated method bound to its
    instance (``config_enumerate`` on ``def model(self, x)``)."""
    for _ in range(20):  # decorators nest a few deep; a cycle must not hang
        if getattr(fn, "__wrapped__", None) is not None:
            fn = fn.__wrapped__
        elif isinstance(fn, functools.partial):
            inner = [a for a in fn.args if inspect.isfunction(a) or inspect.ismethod(a)]
            if not inner:
                break
            fn = inner[0]
        else:
            break
    return fn


def with_idx(fn):
    """``fn`` if it (or the function its decorators wrap) accepts ``idx``; else a wrapper that drops it."""
    try:
        params = inspect.signature(innermost(fn)).parameters
    except (TypeError, ValueError):
        return fn
    if "idx" in params:
        return fn
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):  # idx by keyword, as **kwargs takes it
        return lambda x, idx=None, *args, **kwargs: fn(x, *args, idx=idx, **kwargs)
    return lambda x, idx=None, *args, **kwargs: fn(x, *args, **kwargs)
