"""Turning what a user passes as ``model`` and ``guide`` into Pyro callables.

A model is an ``nn.Module`` with a method ``model(x, ...)``, or the method itself, or any
plain Pyro callable; likewise a guide with ``guide(x, ...)``. Training calls each with the
mini-batch ``x``, then by keyword ``idx`` (the batch's row indices in the training set, with
which non-amortized guides select their per-data-point parameters) and the batch's named inputs
(labels, covariates, masks: :meth:`ppl_vae.data.Dataset.from_tensors`). A callable gets each of
those only if it (or the function its decorators wrap) takes a parameter of that name, or
``**kwargs``; a model may take labels and the guide not, or the other way round.
"""

from __future__ import annotations

import contextlib
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


def modules_of(*programs, depth: int = 3) -> list[nn.Module]:
    """The modules (``nn.Module``) the programs compute with, as far as Python shows them: a module itself, the
    module of a bound method, and modules (or bound methods) held in the closure of a function or of the
    functions its decorators wrap, ``depth`` closures deep."""
    found = {}
    for obj in programs:
        owner = owning_module(obj)
        if owner is not None:
            found[id(owner)] = owner
        for fn in {id(f): f for f in (obj, innermost(obj))}.values():
            for cell in getattr(fn, "__closure__", None) or ():
                try:
                    value = cell.cell_contents
                except ValueError:  # a cell not yet filled
                    continue
                if owning_module(value) is not None or (depth > 1 and callable(value)):
                    found.update((id(m), m) for m in modules_of(value, depth=depth - 1))
    return list(found.values())


@contextlib.contextmanager
def eval_mode(*programs):
    """Run the programs' modules (:func:`modules_of`) in eval mode — BatchNorm on its running statistics,
    no dropout — as every evaluation should, and put every submodule's mode back afterwards."""
    modes = [(m, m.training) for module in modules_of(*programs) for m in module.modules()]
    for m, _ in modes:
        m.training = False
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


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


def takes(fn) -> tuple[set[str], bool]:
    """(the parameter names ``fn`` takes by keyword, whether it takes ``**kwargs``), read from the
    function its decorators wrap; a callable whose signature cannot be read takes everything."""
    try:
        params = inspect.signature(innermost(fn)).parameters.values()
    except (TypeError, ValueError):
        return set(), True
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names, any(p.kind == p.VAR_KEYWORD for p in params)


def with_idx(fn):
    """``fn`` as the trainer calls it, ``fn(x, idx=None, **inputs)``: ``idx`` and each named input are
    passed on by keyword only if ``fn`` takes them (see :func:`takes`)."""
    names, everything = takes(fn)

    def call(x, idx=None, **inputs):
        given = {"idx": idx, **inputs} if idx is not None else inputs
        return fn(x, **{k: v for k, v in given.items() if everything or k in names})

    return call


def callables(model, guide):
    """(model, guide) as Pyro callables called the trainer's way (:func:`with_idx`)."""
    return with_idx(as_pyro_callable(model, "model")), with_idx(as_pyro_callable(guide, "guide"))


def named_inputs(model, guide, data, split: str = "train") -> dict:
    """The named inputs the pair gets with the ``split`` ("train" or "test") of ``data``: the data's own
    (:meth:`ppl_vae.data.Dataset.from_tensors`), and the class labels of a data set that has them as
    ``y`` to a model or guide with a parameter named ``y`` (a conditional model on the digits)."""
    inputs = dict(getattr(data, f"inputs_{split}"))
    labels = getattr(data, f"y_{split}")
    if labels is not None and "y" not in inputs and any(
            "y" in takes(as_pyro_callable(fn, role))[0] for fn, role in ((model, "model"), (guide, "guide"))):
        inputs["y"] = labels
    return inputs


def unused_input(model, guide, inputs) -> str | None:
    """A named input that neither the model nor the guide takes (likely a misspelt name), or None."""
    taken = [takes(as_pyro_callable(fn, role)) for fn, role in ((model, "model"), (guide, "guide"))]
    for name in inputs:
        if not any(everything or name in names for names, everything in taken):
            return name
    return None
