"""The training step recorded once as a graph of torch ops and replayed: the fast path.

A step of SVI spends most of its time in Python when the networks are small: Pyro traces the model
and the guide, its messengers run, the ELBO is assembled site by site, and autograd builds its graph.
:func:`record` runs one step (the loss and the gradient of every parameter) under ``torch.fx``'s
``make_fx``, which records at torch's dispatcher each op the step ran, forward and backward, with the
parameters and the mini-batch's tensors (x, idx, every named input) as the graph's inputs. Replaying
the graph computes the same loss and the same gradients from new inputs with none of that Python:
the same estimator, the same random draws from the same stream (``aten.normal_`` and its kind are
recorded ops, fresh at every replay), no TorchScript. ``benchmarks/RESULTS.md`` has what it saves.

A recorded graph holds one path through the program, so it is right only where every step takes that
path with tensors of those shapes. :func:`recorded` uses it where the run allows and says why not:

- the objective has a recorded form: ``elbo`` (with enumerated sites summed out too, Pyro's
  ``TraceEnum_ELBO``), ``elbo-analytic``, the importance-weighted objectives, and DisARM / ARM. The score-function ELBOs have none:
  Pyro's decaying-average baselines update outside torch's ops, which a replay would skip;
- the schedule is joint SVI: variational EM hides one side's parameters from each half-step;
- every named input is a tensor given for every point (a partial input calls the program with None
  for some batches, another path), and every per-step input of a :class:`~ppl_vae.pair.Pair` is a
  tensor (a number would be recorded as a constant);
- every mini-batch has one size (``drop_last``, or a batch size that divides the training set);
- the run is long enough to pay for the recording: :data:`MIN_STEPS` (from the benchmarks' record
  and step times: below it, recording costs more time than the replays save);
- recorded on the first mini-batch, the replay's loss and every gradient equal the eager ones on the
  second, drawn from the same random numbers (within float32 reduction-order error): this catches
  Python control flow that depends on the data or the draws and took another path there, and
  tensors the graph would hold as constants. (A branch that the first two batches take alike is not
  caught; ``--no-jit`` is the way out for such a program.)

Recording and the check draw their random numbers from forks of the stream, so a run that records
at its first step, or again after a resume, draws the same numbers as one that never recorded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
import operator
import time

import pyro
import pyro.infer.trace_elbo
import pyro.infer.trace_mean_field_elbo
import pyro.infer.traceenum_elbo
import torch
from pyro import poutine
from torch.fx.experimental.proxy_tensor import make_fx

from ppl_vae.device import forked_rng
from ppl_vae.inference.guard import backward

# float32 sums of a batch's terms in another order: |replay − eager| ≤ RTOL |eager| for the loss, and
# 10 RTOL |eager| + RTOL max |eager| for each gradient's entries
RTOL = 1e-5

# a run of fewer training steps trains eagerly: recording costs 0.15-0.2 s and a replay saves 0.8-1.0 ms a step
# on the digits and MNIST networks (benchmarks/RESULTS.md, "The recorded step"), so it pays from ~250 steps
MIN_STEPS = 300


def recorded(objective, model, guide, first: tuple, second: tuple, *, schedule: str, sizes: set[int],
             steps: int, not_tensors: list[str], partial: list[str]):
    """(objective, what to say): ``objective`` training with its recorded step and a line saying what
    recording took, or ``objective`` unchanged and one sentence saying why the run trains eagerly (None
    when the objective has no recorded form at all). ``first``, ``second``: (args, kwargs) of two
    mini-batches of the run's size, as the training step passes them; ``sizes``: the mini-batch sizes
    an epoch uses; ``steps``: the run's training steps; ``not_tensors``, ``partial``: the per-step inputs
    that are not tensors, the named inputs not given for every point."""
    if not objective.recordable:
        return objective, None
    if schedule != "joint":
        return objective, ("variational EM hides each side's parameters in turn, which a recorded graph "
                           "would hold as constants")
    if partial:
        return objective, (f"{', '.join(partial)} is given for some points only, and the program takes another "
                           f"path where it is None")
    if not_tensors:
        return objective, (f"the pair's per-step input{'s' if len(not_tensors) > 1 else ''} "
                           f"{', '.join(not_tensors)} {'are' if len(not_tensors) > 1 else 'is'} not a tensor, which "
                           f"a recorded graph would hold fixed; give {'them' if len(not_tensors) > 1 else 'it'} as "
                           f"torch.tensor(...) to record the step")
    if len(sizes) > 1:
        return objective, (f"the mini-batches have {len(sizes)} sizes ({', '.join(map(str, sorted(sizes)))}) and "
                           f"a recorded graph holds one; --drop-last (the default) keeps one")
    if steps < MIN_STEPS:
        return objective, (f"a run of {steps} steps is too short to pay for recording the step "
                           f"(recording pays from about {MIN_STEPS} steps)")
    x = first[0][0]
    import torch._dynamo  # noqa: F401 — torch's optimizers import it at their first step anyway: not recording's cost
    try:
        with forked_rng(x):
            torch.rand(1024, device=x.device)  # other draws than the check's, so that a branch on them shows
            start = time.perf_counter()
            fast = record(objective.loss, model, guide, *first)
            seconds = time.perf_counter() - start
        with forked_rng(x):
            eager = loss_and_gradients(objective.loss, model, guide, *second)
        with forked_rng(x):
            replayed = loss_and_gradients(fast, model, guide, *second)
    except Exception as e:  # a program make_fx cannot record
        drop_gradients()
        return objective, f"torch.fx could not record it ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
    differs = difference(eager, replayed)
    if differs is not None:
        return objective, (f"recorded on one mini-batch, it computed {differs} on another, so the program takes a "
                           f"path the record does not hold")
    return dataclasses.replace(objective, loss=fast, recordable=False), (
        f"recorded in {seconds:.2f} s ({fast.ops} ops; its replay matches the eager step on a second mini-batch)")


class Recorded:
    """A training loss whose step replays a graph recorded by :func:`record`. ``eager``: the loss it
    was recorded from (``loss`` without gradients stays eager); ``names``: the parameters the graph
    takes, in order; ``graph``: the ``torch.fx.GraphModule`` (*params, *the step's tensors) → (loss, *grads)."""

    def __init__(self, eager, names: list[str], graph: torch.fx.GraphModule, signature: tuple):
        self.eager, self.names, self.graph, self.signature = eager, names, graph, signature
        self.touched: list[torch.Tensor] = []  # the parameters the last replay gave gradients to

    @property
    def ops(self) -> int:
        return sum(node.op == "call_function" for node in self.graph.graph.nodes)

    def params(self) -> list[torch.Tensor]:
        """The parameters' unconstrained tensors now (a restored checkpoint replaces them)."""
        named = dict(pyro.get_param_store().named_parameters())
        return [named[name] for name in self.names]

    def loss(self, model, guide, *args, **kwargs) -> float:
        return self.eager.loss(model, guide, *args, **kwargs)

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        return self.backward(model, guide, *args, **kwargs).item()

    def backward(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """The loss as a 0-dim tensor; accumulates the gradients into the parameters' ``.grad``. A call
        unlike the recorded one (other arguments, other shapes) runs the eager loss."""
        if signature(args, kwargs) != self.signature:
            return backward(self.eager, model, guide, *args, **kwargs)
        params = self.params()
        with torch.no_grad():  # the graph holds the backward pass's ops too: autograd has nothing to record
            value, *grads = self.graph(*params, *tensors_in(args, kwargs))
        for p, g in zip(params, grads):
            if g is not None:
                p.grad = g if p.grad is None else p.grad + g
        self.touched = params
        return value


def record(loss, model, guide, args: tuple, kwargs: dict) -> Recorded:
    """``loss``'s training step on the mini-batch ``args``, ``kwargs`` (as the step passes them), recorded as a graph (see the module's docstring)."""
    with poutine.trace(param_only=True) as found, torch.no_grad():
        with pyro.validation_enabled(False):
            loss.loss(model, guide, *args, **kwargs)  # creates nothing: finds the parameters the step reads
    names, params = [], []
    store = pyro.get_param_store()
    for site in found.trace.nodes.values():
        p = site["value"].unconstrained()
        if p.requires_grad and store.param_name(p) not in names:
            names.append(store.param_name(p))
            params.append(p)
    position = {id(p): i for i, p in enumerate(params)}

    def step(*flat):  # flat: a tuple of tensors, which the graph takes without unpacking structures
        ps, inputs = flat[:len(params)], iter(flat[len(params):])
        a = tuple(next(inputs) if torch.is_tensor(v) else v for v in args)
        k = {name: next(inputs) if torch.is_tensor(v) else v for name, v in kwargs.items()}
        value, terms = loss_terms(loss, model, guide, *a, **k)
        grads = [None] * len(ps)
        for i, (surrogate, wrt) in enumerate(terms):
            wrt = ps if wrt is None else wrt
            found = torch.autograd.grad(surrogate, wrt, allow_unused=True, retain_graph=i < len(terms) - 1)
            for p, g in zip(wrt, found):
                j = position[id(p)]
                if g is not None:
                    grads[j] = g if grads[j] is None else grads[j] + g
        return value, *grads

    with pyro.validation_enabled(False), tensors_not_items():
        graph = make_fx(step, **READS_ALLOWED)(*params, *tensors_in(args, kwargs))
    return Recorded(loss, names, pruned(graph), signature(args, kwargs))


def tensors_in(args: tuple, kwargs: dict) -> list:
    """The tensors among a step's arguments, positional then named, as the recorded graph takes them."""
    return [v for v in (*args, *kwargs.values()) if torch.is_tensor(v)]


def signature(args: tuple, kwargs: dict) -> tuple:
    """What a recorded graph's inputs must be like: the positions and names, and each tensor's shape and dtype."""
    def like(v):
        return (tuple(v.shape), v.dtype) if torch.is_tensor(v) else type(v)
    return tuple(map(like, args)), tuple((k, like(v)) for k, v in kwargs.items())


IDENTITIES = (torch.ops.aten.alias.default, torch.ops.aten.detach.default)


def pruned(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """``graph`` without what a replay under ``no_grad`` need not run: aliases and detaches (autograd's
    bookkeeping, the identity on values), a pure op computed again from the same inputs (the guide run
    twice on the same x, as the path-derivative estimators' log q_φ(⊥z) does; a weight transposed in the
    forward and again in the backward pass), and ops whose results nothing uses."""
    seen = {}
    for node in list(graph.graph.nodes):
        if node.op != "call_function":
            continue
        if node.target in IDENTITIES:
            node.replace_all_uses_with(node.args[0])
            graph.graph.erase_node(node)
        elif pure(node):
            key = frozen((node.target, node.args, node.kwargs))
            if key is not None and key in seen:
                node.replace_all_uses_with(seen[key])
                graph.graph.erase_node(node)
            elif key is not None:
                seen[key] = node
    graph.graph.eliminate_dead_code()
    graph.recompile()
    return graph


def pure(node: torch.fx.Node) -> bool:
    """Whether ``node`` computes a value from its inputs alone: no random draw, no write to an input, and
    nothing writes to its result (an ``empty`` that ``normal_`` fills is not a value to share)."""
    def writes(target) -> bool:
        return isinstance(target, torch._ops.OpOverload) and target._schema.is_mutable
    target = node.target
    if target is operator.getitem:
        return True
    return (isinstance(target, torch._ops.OpOverload) and not writes(target)
            and torch.Tag.nondeterministic_seeded not in target.tags
            and not any(writes(user.target) for user in node.users))


def frozen(value):
    """``value`` (an op's arguments: nodes, numbers, lists, dicts) as a hashable key, or None."""
    if isinstance(value, (list, tuple)):
        items = [frozen(v) for v in value]
        return None if any(i is None and v is not None for i, v in zip(items, value)) else (type(value), *items)
    if isinstance(value, dict):
        return frozen(sorted(value.items(), key=lambda kv: kv[0]))
    try:
        hash(value)
    except TypeError:
        return None
    return value


# a program may read a value while it runs (F.one_hot checks its labels' range, Pyro's ELBOs check for NaN):
# the read is allowed, its result held as the record's constant, and the check on a second mini-batch
# catches a read that decides the path
READS_ALLOWED = {"_error_on_data_dependent_ops": False} if \
    "_error_on_data_dependent_ops" in inspect.signature(make_fx).parameters else {}


def loss_terms(loss, model, guide, *args, **kwargs):
    """(−Σ bound as a 0-dim tensor, [(surrogate, the parameters it trains, or None for all)]) of one step."""
    if hasattr(loss, "terms"):  # the importance-weighted objectives
        return loss.terms(model, guide, *args, **kwargs)
    value = loss.differentiable_loss(model, guide, *args, **kwargs)  # Pyro's ELBOs: the loss's value, its gradient
    return value.detach(), [(value, None)]


@contextlib.contextmanager
def tensors_not_items():
    """Pyro's ELBOs sum their value in Python floats (``torch_item``), which would record as constants; while
    recording, the value stays a (detached) tensor, so that the replay computes it."""
    modules = [m for m in (pyro.infer.trace_elbo, pyro.infer.trace_mean_field_elbo, pyro.infer.traceenum_elbo)
               if hasattr(m, "torch_item")]
    saved = [m.torch_item for m in modules]
    try:
        for m in modules:
            m.torch_item = lambda v: v.detach() if torch.is_tensor(v) else v
        yield
    finally:
        for m, original in zip(modules, saved):
            m.torch_item = original


def loss_and_gradients(loss, model, guide, args, kwargs) -> tuple[float, dict]:
    """(the loss, {parameter name: its gradient}) of one step, leaving no gradient behind."""
    value = float(backward(loss, model, guide, *args, **kwargs))  # as the guarded training step computes them
    grads = {name: None if p.grad is None else p.grad.clone() for name, p in pyro.get_param_store().named_parameters()}
    drop_gradients()
    return value, grads


def drop_gradients() -> None:
    for _, p in pyro.get_param_store().named_parameters():
        p.grad = None


def difference(eager: tuple[float, dict], replayed: tuple[float, dict]) -> str | None:
    """What of ``replayed`` differs from ``eager`` (two :func:`loss_and_gradients`), or None."""
    (loss, grads), (fast_loss, fast_grads) = eager, replayed
    if not math.isclose(loss, fast_loss, rel_tol=RTOL, abs_tol=RTOL):
        return f"a loss of {fast_loss:.6g} where the eager loss is {loss:.6g}"
    for name, g in grads.items():
        j = fast_grads.get(name)
        if (g is None) != (j is None):
            return f"{'no' if j is None else 'a'} gradient of {name} where the eager loss has {'none' if g is None else 'one'}"
        if g is not None:
            g, j = dense(g), dense(j)
            if not torch.allclose(j, g, rtol=10 * RTOL, atol=RTOL * float(g.abs().max())):
                return f"a gradient of {name} unlike the eager loss's"
    return None


def dense(g: torch.Tensor) -> torch.Tensor:
    return g.to_dense() if g.is_sparse else g
