"""JIT-compiled training losses, where they compute what the eager loss computes.

Pyro's ``JitTrace_ELBO`` (and its mean-field and enumerated forms) traces the loss once with
``torch.jit.trace`` and replays the recorded graph at every later step: the same estimator
without Python's per-step cost of tracing the model and guide (``benchmarks/RESULTS.md``). A
recorded graph holds one path through the program, so it is right only where every step takes
that path with tensors of that shape. :func:`compiled` uses it where the run allows and says why
not otherwise:

- the objective has a JIT form: ``elbo`` and ``elbo`` with enumerated sites (Pyro's JIT ELBOs), and the
  importance-weighted objectives (:class:`~ppl_vae.inference.objectives.weighted.CompiledWeighted`).
  ``elbo-analytic`` has none: Pyro's ``JitTraceMeanField_ELBO`` was 10× slower than ``elbo`` here;
- the schedule is joint SVI: variational EM hides one side's parameters from each half-step,
  and a graph traced with them hidden would hold their values as constants;
- the model and guide take no named inputs: Pyro passes keyword tensors into the trace as
  constants, so every batch would see the first batch's labels;
- every mini-batch has one size (``drop_last``, or a batch size that divides the training set);
- traced on the first mini-batch, the compiled loss and every gradient equal the eager ones on
  the second, drawn from the same random numbers (within float32 reduction-order error): this
  catches Python control flow that depends on the data or the draws and took another path there,
  and parameters the graph would hold as constants. (A branch that the first two batches take
  alike is not caught; ``--no-jit`` is the way out for such a program.)

Tracing and the check draw their random numbers from forks of the stream, so a run that compiles
at its first step, or again after a resume, draws the same numbers as one that never compiled.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import pyro
import torch

from ppl_vae.device import forked_rng
from ppl_vae.inference.guard import backward

# float32 sums of a batch's terms in another order: |jit − eager| ≤ RTOL |eager| for the loss, and
# 10 RTOL |eager| + RTOL max |eager| for each gradient's entries
RTOL = 1e-5


def compiled(objective, model, guide, first: tuple, second: tuple, *, named_inputs: bool, schedule: str,
             sizes: set[int]):
    """(objective, why not): ``objective`` training with its JIT-compiled loss and None, or
    ``objective`` unchanged and one sentence saying why the run trains eagerly (None when the
    objective has no JIT form at all). ``first``, ``second``: (x, idx) of two mini-batches of the
    run's size; ``sizes``: the mini-batch sizes an epoch uses."""
    if objective.jit is None:
        return objective, None
    if schedule != "joint":
        return objective, ("variational EM hides each side's parameters in turn, which a compiled graph "
                           "would hold as constants")
    if named_inputs:
        return objective, "the model and guide take named inputs, which Pyro's JIT would compile in as constants"
    if len(sizes) > 1:
        return objective, (f"the mini-batches have {len(sizes)} sizes ({', '.join(map(str, sorted(sizes)))}) and "
                           f"a compiled graph holds one; --drop-last (the default) keeps one")
    jit_loss = objective.jit()
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")
    x = first[0]
    try:
        with forked_rng(x):
            torch.rand(1024, device=x.device)  # other draws than the check's, so that a branch on them shows
            loss_and_gradients(jit_loss, model, guide, *first)  # traces and compiles
        with forked_rng(x):
            eager = loss_and_gradients(objective.loss, model, guide, *second)
        with forked_rng(x):
            traced = loss_and_gradients(jit_loss, model, guide, *second)
    except Exception as e:  # a program torch.jit.trace cannot record
        drop_gradients()
        return objective, f"torch.jit.trace failed on it ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
    differs = difference(eager, traced)
    if differs is not None:
        return objective, (f"traced on one mini-batch, it computed {differs} on another, so the program takes a "
                           f"path the trace does not hold")
    return dataclasses.replace(objective, loss=jit_loss, jit=None), None


def loss_and_gradients(loss, model, guide, x, idx) -> tuple[float, dict]:
    """(the loss, {parameter name: its gradient}) of one step, leaving no gradient behind."""
    value = float(backward(loss, model, guide, x, idx))  # as the guarded training step computes them
    grads = {name: None if p.grad is None else p.grad.clone() for name, p in pyro.get_param_store().named_parameters()}
    drop_gradients()
    return value, grads


def drop_gradients() -> None:
    for _, p in pyro.get_param_store().named_parameters():
        p.grad = None


def difference(eager: tuple[float, dict], traced: tuple[float, dict]) -> str | None:
    """What of ``traced`` differs from ``eager`` (two :func:`loss_and_gradients`), or None."""
    (loss, grads), (jit_loss, jit_grads) = eager, traced
    if not math.isclose(loss, jit_loss, rel_tol=RTOL, abs_tol=RTOL):
        return f"a loss of {jit_loss:.6g} where the eager loss is {loss:.6g}"
    for name, g in grads.items():
        j = jit_grads.get(name)
        if (g is None) != (j is None):
            return f"{'no' if j is None else 'a'} gradient of {name} where the eager loss has {'none' if g is None else 'one'}"
        if g is not None:
            g, j = dense(g), dense(j)
            if not torch.allclose(j, g, rtol=10 * RTOL, atol=RTOL * float(g.abs().max())):
                return f"a gradient of {name} unlike the eager loss's"
    return None


def dense(g: torch.Tensor) -> torch.Tensor:
    return g.to_dense() if g.is_sparse else g
