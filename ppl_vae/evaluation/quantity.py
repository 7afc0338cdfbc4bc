"""What a pair's log-likelihood is of: the sites its model observes and the inputs it conditions on.

The importance weights log w = log p_θ(x, z) − log q_φ(z | x) sum every observed site of the model,
whatever it holds, so the number they estimate is named from the program itself, not assumed:

- a model that observes the data tensor alone: log p(x);
- one that also observes a named input (a label y passed as ``ys`` and observed with ``obs=ys``, as
  ss_vae_M2.py does): log p(x, y), the joint, never log p(x | y);
- one that takes an input without scoring it (a class it conditions on): log p(x | y);
- one that observes something other than the data tensor and takes the data as input (cvae.py
  scores the hidden quadrants y given the visible x): log p(y | x); when an observed value is computed
  from the inputs (cvae.py observes ``ys[xs == -1]``), no input is claimed as conditioned on, since
  which of them the value came from cannot be told.

Observed sites are named by their site names, except the one whose value is the data tensor (in
any shape: ``obs=x.reshape(-1, 784)`` counts), which is ``x``, and sites whose values are parts of
the data tensor that together make all of it (dmm.py observes ``mini_batch[:, t - 1, :]`` at each
time step t), which are ``x`` too.
"""

from __future__ import annotations

import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from ppl_vae.data import batch_inputs
from ppl_vae.device import forked_rng
from ppl_vae.pair import takes

POINTS = 8  # points traced to match observed values to the data and the inputs


def same_values(a, b) -> bool:
    """Whether ``a`` holds the values of ``b`` (in any shape, any dtype)."""
    return (torch.is_tensor(a) and torch.is_tensor(b) and a.numel() == b.numel()
            and torch.equal(a.detach().reshape(-1).double(), b.detach().reshape(-1).double()))


def positions_in(value, x: torch.Tensor) -> torch.Tensor | None:
    """The flat positions in ``x`` (contiguous) of the elements ``value`` views — ``x[:, t]`` is a part of
    x — or None when ``value`` is not a view into x's memory."""
    if not (torch.is_tensor(value) and torch.is_tensor(x) and x.is_contiguous() and value.numel()
            and value.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()):
        return None
    offsets = torch.zeros(value.shape, dtype=torch.long)
    for d, (size, stride) in enumerate(zip(value.shape, value.stride())):
        offsets += (torch.arange(size) * stride).view([-1 if i == d else 1 for i in range(value.dim())])
    found = offsets.reshape(-1) + (value.storage_offset() - x.storage_offset())
    return found if bool(((found >= 0) & (found < x.numel())).all()) else None


def observed_quantity(model, guide, x, inputs: dict | None = None, model_fn=None) -> dict:
    """{"quantity": "log p(x, y | c)", "observed": {site: what it holds}, "given": [names]} for the pair
    (Pyro callables called the trainer's way, ``model(x, **inputs)``) on the first points of ``x``.
    ``model_fn``: the user's model function, to read which inputs it takes (default ``model``)."""
    n = min(POINTS, int(x.shape[0]))
    xb, ib = x[:n], batch_inputs(inputs, slice(0, n))
    with torch.no_grad(), forked_rng(x):
        guide_tr = poutine.trace(guide).get_trace(xb, **ib)
        model_tr = poutine.trace(poutine.replay(model, trace=guide_tr)).get_trace(xb, **ib)
    sites = [(name, site) for name, site in model_tr.nodes.items()
             if site["type"] == "sample" and site["is_observed"] and not site_is_subsample(site)]
    parts = {name: positions_in(site["value"], xb) for name, site in sites}
    covered = torch.zeros(xb.numel(), dtype=torch.bool)
    for found in parts.values():
        if found is not None:
            covered[found] = True
    whole = bool(covered.all())  # the parts make all of x (one site per time step)
    observed, labels = {}, []
    for name, site in sites:
        if whole and parts[name] is not None and not same_values(site["value"], xb):
            observed[name], label = "part of the data x", "x"
        elif same_values(site["value"], xb):
            observed[name], label = "the data x", "x"
        else:
            source = next((k for k, v in ib.items() if same_values(site["value"], v)), None)
            observed[name] = f"the input {source}" if source else "a value the model computes from its inputs"
            label = name
        if label not in labels:
            labels.append(label)
    names, everything = takes(model_fn or model)
    scored = {text.removeprefix("the input ") for text in observed.values()}
    computed = any(text.startswith("a value") for text in observed.values())
    # a site observed at a value computed from the inputs (cvae.py scores ys[xs == -1]) may be any of them:
    # no input is then claimed as conditioned on
    given = [] if computed else [k for k in sorted(ib) if (everything or k in names) and k not in scored]
    if "x" not in labels:
        given.insert(0, "x")
    labels.sort(key=lambda label: label != "x")  # the data first, then the other sites in program order
    quantity = f"log p({', '.join(labels) or '∅'}{' | ' + ', '.join(given) if given else ''})"
    return {"quantity": quantity, "observed": observed, "given": given}


@torch.no_grad()
def log_prob_of_inputs(model, guide, x, inputs: dict, observed: dict) -> torch.Tensor | None:
    """log p(y_n) per point [N], summed over the observed sites that hold named inputs (M2's label y), when
    their distribution depends on no latent variable — seen as equal log-probabilities under two
    independent draws of the latents — so that log p(x | y) = log p(x, y) − log p(y) exactly; else None."""
    sites = [name for name, what in observed.items() if what.startswith("the input ")]
    if not sites or "the data x" not in observed.values():
        return None
    draws = []
    for _ in range(2):
        guide_tr = poutine.trace(guide).get_trace(x, **inputs)
        model_tr = poutine.trace(poutine.replay(model, trace=guide_tr)).get_trace(x, **inputs)
        model_tr.compute_log_prob()
        parts = [model_tr.nodes[name]["log_prob"] for name in sites]
        if any(lp.dim() == 0 or lp.shape[-1] != x.shape[0] for lp in parts):
            return None  # not one value per data point
        draws.append(sum(lp.reshape(-1, x.shape[0]).sum(0) for lp in parts))
    return draws[0] if torch.equal(draws[0], draws[1]) else None
