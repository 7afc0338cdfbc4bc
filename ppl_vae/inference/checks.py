"""What an objective can do with a Pyro program, checked on one batch before any training.

Every bound this project reports is per data point, a function of log w_n for each point n of
``pyro.plate("data")`` (:mod:`ppl_vae.inference.weights`). A program that does not have that
shape, or that an objective would silently mistreat, is refused with one sentence:

- a latent site outside the data plate (a global latent): its log-density belongs to no point;
- no site inside a plate named ``"data"`` at all (a plate with another name);
- a discrete site marked for enumeration (``config_enumerate``) and not sampled by the guide,
  under the score-function objectives (``TraceGraph_ELBO``) or ``elbo-analytic``
  (``TraceMeanField_ELBO``): those would sample it from the prior instead of summing it out.
  ``elbo`` sums it out (:func:`summing_out` gives it ``TraceEnum_ELBO``), as ``enum`` and the
  importance-weighted objectives do, so its training and test bounds are one quantity;
- under ``elbo-analytic`` (``TraceMeanField_ELBO``), a guide site whose KL to the model's site has
  no closed form: Pyro would estimate that term by Monte Carlo without a word, and a comparison
  table would show the same estimator under two names.
"""

from __future__ import annotations

import dataclasses

import pyro
import torch
from pyro import poutine
from pyro.infer import (JitTrace_ELBO, JitTraceEnum_ELBO, TraceEnum_ELBO, TraceGraph_ELBO, Trace_ELBO,
                        TraceMeanField_ELBO)
from pyro.poutine.util import site_is_subsample
from torch.distributions import kl_divergence

from ppl_vae.data import Dataset
from ppl_vae.errors import UsageError
from ppl_vae.inference import objectives
from ppl_vae.data import batch_inputs
from ppl_vae.pair import callables


def sample_sites(trace, observed: bool):
    return {name: site for name, site in trace.nodes.items()
            if site["type"] == "sample" and not site_is_subsample(site) and site["is_observed"] == observed}


def in_data_plate(site) -> bool:
    return any(f.name == "data" for f in site["cond_indep_stack"])


def refusal(objective, model_trace, guide_trace) -> str | None:
    """Why ``objective`` cannot train this model and guide (traced once on a batch), or None."""
    latents = {**sample_sites(guide_trace, False), **sample_sites(model_trace, False)}
    observed = sample_sites(model_trace, True)
    if not any(in_data_plate(s) for s in (*latents.values(), *observed.values())):
        return ("no sample site lies inside a plate named 'data'; per-data-point bounds need the data points in "
                "pyro.plate('data', ...) at dim=-1, so name the model's and the guide's data plate 'data'")
    outside = [name for name, site in latents.items() if not in_data_plate(site)]
    if outside:
        return (f"latent site {outside[0]!r} lies outside pyro.plate('data'): a global latent variable, whose "
                f"log-density belongs to no single data point, so no per-point bound (the test bound of every "
                f"objective, the importance-weighted ones) exists for it; move it inside the data plate, or make "
                f"it a point estimate with pyro.param")
    enumerated = enumerated_sites(model_trace, guide_trace)
    loss = getattr(objective, "loss", objective)
    if isinstance(loss, TraceEnum_ELBO) and not enumerated:
        return (f"the {objective.name} objective sums discrete sites marked for enumeration out exactly, and this "
                f"model has none (config_enumerate), so it would train a plain ELBO under another name; use elbo")
    if enumerated and isinstance(loss, (Trace_ELBO, TraceGraph_ELBO)) and not isinstance(loss, TraceEnum_ELBO):
        return (f"model site {enumerated[0]!r} is marked for enumeration, which the {objective.name} objective does "
                f"not do: it would sample the site from the prior instead of summing it out; use --objective elbo, "
                f"or an importance-weighted objective (iwae, renyi, rws, stl, dreg), which sum it out")
    if isinstance(loss, TraceMeanField_ELBO):
        for name, site in sample_sites(guide_trace, False).items():
            if name in model_trace.nodes and not has_closed_form_kl(site["fn"], model_trace.nodes[name]["fn"]):
                return (f"site {name!r} has no closed-form KL(q ‖ p) between {type(site['fn']).__name__} and "
                        f"{type(model_trace.nodes[name]['fn']).__name__}, so {objective.name} would estimate it by "
                        f"Monte Carlo like elbo does; use --objective elbo")
    return None


def enumerated_sites(model_trace, guide_trace) -> list[str]:
    """The model's sites marked for parallel enumeration that the guide does not sample."""
    return [name for name, site in model_trace.nodes.items()
            if site["type"] == "sample" and site["infer"].get("enumerate") == "parallel"
            and name not in guide_trace.nodes]


def summing_out(objective, model_trace, guide_trace):
    """``objective`` with ``TraceEnum_ELBO`` in place of the ``elbo`` objective's ``Trace_ELBO`` when the
    model marks sites for enumeration: the same ELBO with those sites summed out, not sampled from the
    prior (the estimator of ``enum``; on a model with nothing to enumerate it would only be slower)."""
    loss = getattr(objective, "loss", None)
    if type(loss) not in (Trace_ELBO, JitTrace_ELBO) or not enumerated_sites(model_trace, guide_trace):
        return objective
    enum = JitTraceEnum_ELBO(ignore_jit_warnings=True) if isinstance(loss, JitTrace_ELBO) else TraceEnum_ELBO()
    enum.num_particles, enum.vectorize_particles = loss.num_particles, loss.vectorize_particles
    enum.max_plate_nesting = loss.max_plate_nesting
    return dataclasses.replace(objective, loss=enum)


def has_closed_form_kl(q, p) -> bool:
    try:
        kl_divergence(q, p)
    except NotImplementedError:
        return False
    return True


def check(model, guide, data, names=None, particles: int = 2) -> dict[str, str]:
    """A one-batch dry run of each objective on a pair: {objective: "ok" or "refused: why"}.

    ``model``/``guide`` as :func:`ppl_vae.fit` takes them; ``data`` a Dataset or a tensor [N, D];
    ``names`` the objectives (default: every one). Nothing is trained: each loss is evaluated once,
    without gradients, in a param-store scope of its own and with the random stream put back.
    """
    data = data if isinstance(data, Dataset) else Dataset.from_tensors(data)
    x, inputs = data.x_train[:4], batch_inputs(data.inputs_train, slice(0, 4))
    idx = torch.arange(x.shape[0], device=x.device)
    model, guide = callables(model, guide)
    results = {}
    for name in names or objectives.OBJECTIVES:
        objective = objectives.make(name, particles=particles)
        with pyro.get_param_store().scope(), torch.random.fork_rng(devices=[]), torch.no_grad():
            try:
                guide_tr = poutine.trace(guide).get_trace(x, idx, **inputs)
                model_tr = poutine.trace(poutine.replay(model, trace=guide_tr)).get_trace(x, idx, **inputs)
                objective = summing_out(objective, model_tr, guide_tr)
                why = refusal(objective, model_tr, guide_tr)
                if why is None:
                    objective.loss.loss(model, guide, x, idx, **inputs)
            except UsageError as e:
                why = str(e).rstrip(".")
            except Exception as e:  # noqa: BLE001 — a user's program can fail in any way; say how
                why = f"fails on one batch ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        results[name] = "ok" if why is None else f"refused: {why}"
    return results
