"""Turning what a user passes as ``model`` and ``guide`` into Pyro callables.

A model is an ``nn.Module`` with a method ``model(x, ...)``, or the method itself, or any
plain Pyro callable; likewise a guide with ``guide(x, ...)``. Training calls each with the
mini-batch ``x``, then by keyword ``idx`` (the batch's row indices in the training set, with
which non-amortized guides select their per-data-point parameters) and the batch's named inputs
(labels, covariates, masks: :meth:`ppl_vae.data.Dataset.from_tensors`). A callable gets each of
those only if it (or the function its decorators wrap) takes a parameter of that name, or
``**kwargs``; a model may take labels and the guide not, or the other way round.

A factory may return a :class:`Pair` instead of ``(model, guide)``: the pair with what Pyro's own
training loops add around it — a per-batch function that builds the program's arguments from the
batch (DMM's reversed sequences and masks), extra losses (M2's auxiliary classifier), per-step
arguments from a schedule (KL annealing) and a hook after every optimizer step (clamping
parameters). They come from the factory's file, so a run records them with the factory's sha256.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from torch import nn

from ppl_vae.errors import UsageError


def as_pyro_callable(obj, method: str):
    """``obj.<method>`` for a module that has it, else ``obj`` itself."""
    fn = getattr(obj, method, None)
    return fn if isinstance(obj, nn.Module) and callable(fn) else obj


@dataclass
class Pair:
    """A model and a guide, and what a training loop adds around them, as Pyro's examples write it.

    ``arguments(x, **inputs)``: the program's arguments built from a batch — a dict of keyword
    arguments or a tuple of positional ones — in training, the test bound and every evaluation
    (it takes ``idx`` and the named inputs it names); the program also gets, by keyword, every
    named input it takes that ``arguments`` did not set.
    ``losses``: extra losses, each ``loss(model, guide, x, **inputs)`` returning a scalar tensor that
    is added to −(the objective's surrogate) for the gradients only; the training bound is the
    objective's alone, and each epoch records the extra losses' mean per data point apart.
    ``step_inputs``: ``{name: schedule(step)}``, keyword arguments the program gets at training step
    ``step`` (counted from 0; e.g. a KL annealing factor) — in training only, so the test bound and
    ``evaluate`` are of the program with its defaults.
    ``after_step()``: called after every optimizer step (e.g. clamping parameters into a range)."""

    model: object
    guide: object
    arguments: Callable | None = None
    losses: Sequence[Callable] = ()
    step_inputs: Mapping[str, Callable[[int], object]] = field(default_factory=dict)
    after_step: Callable[[], object] | None = None

    def __post_init__(self):
        self.losses = tuple(self.losses)
        for what, fn in [("arguments", self.arguments), ("after_step", self.after_step), *(
                (f"losses[{i}]", loss) for i, loss in enumerate(self.losses)), *(
                (f"step_inputs[{name!r}]", s) for name, s in dict(self.step_inputs).items())]:
            if fn is not None and not callable(fn):
                raise UsageError(f"Pair's {what} is {type(fn).__name__}, not a callable; pass a function.")
        for i, loss in enumerate(self.losses):
            try:
                inspect.signature(loss).bind(None, None, None)
            except TypeError:
                raise UsageError(f"Pair's losses[{i}] ({getattr(loss, '__name__', loss)!r}) cannot be called as "
                                 f"loss(model, guide, x, **inputs); write it with those parameters.") from None
            except ValueError:  # a builtin whose signature cannot be read: trust it
                pass

    def programs(self):
        """(model, guide) as training calls them, each an :class:`Adapted` that applies ``arguments`` and
        through which the trainer finds the other extras (:func:`pair_of`)."""
        return Adapted(self.model, "model", self), Adapted(self.guide, "guide", self)


class Adapted:
    """A model or guide of a :class:`Pair`, called the trainer's way, ``program(x, idx=None, **inputs)``."""

    def __init__(self, program, role: str, pair: Pair):
        self.program, self.role, self.pair = program, role, pair
        self.fn = as_pyro_callable(program, role)
        self.passing = passing(self.fn)
        self.arguments = pair.arguments and passing(pair.arguments)

    @property
    def __self__(self):  # so that owning_module finds the program's module
        return owning_module(self.program)

    def __call__(self, x, idx=None, **inputs):
        if self.arguments is None:
            args, kwargs = (x,), {}
        else:
            built = self.pair.arguments(x, **self.arguments(idx, inputs))
            args, kwargs = (built, {}) if isinstance(built, tuple) else ((), dict(built))
        kwargs.update((k, v) for k, v in self.passing(idx, inputs).items() if k not in kwargs)
        return self.fn(*args, **kwargs)


def pair_of(program) -> Pair | None:
    """The :class:`Pair` a model or guide came from, if any."""
    return program.pair if isinstance(program, Adapted) else None


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
        if isinstance(obj, Adapted):
            obj = obj.program
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
    function its decorators wrap; a callable whose signature cannot be read takes everything. A
    :class:`Pair`'s program takes what the program and the pair's ``arguments`` take."""
    if isinstance(fn, Adapted):
        parts = [takes(fn.fn)] + ([takes(fn.pair.arguments)] if fn.pair.arguments else [])
        return set().union(*(names for names, _ in parts)), any(everything for _, everything in parts)
    try:
        params = inspect.signature(innermost(fn)).parameters.values()
    except (TypeError, ValueError):
        return set(), True
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names, any(p.kind == p.VAR_KEYWORD for p in params)


def with_idx(fn):
    """``fn`` as the trainer calls it, ``fn(x, idx=None, **inputs)``: each named input is passed on by
    keyword if ``fn`` takes it (see :func:`takes`), ``idx`` only to a parameter named ``idx`` — never
    into ``**kwargs``, which a program may pass on (AIR's model does)."""
    call_with = passing(fn)

    def call(x, idx=None, **inputs):
        return fn(x, **call_with(idx, inputs))

    return call


def passing(fn):
    """``(idx, inputs) -> keyword arguments`` for ``fn``, by :func:`with_idx`'s rule."""
    names, everything = takes(fn)

    def kwargs(idx, inputs: dict) -> dict:
        given = {k: v for k, v in inputs.items() if everything or k in names}
        if idx is not None and "idx" in names:
            given["idx"] = idx
        return given

    return kwargs


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
