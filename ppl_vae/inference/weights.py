"""Log importance weights per data point, and the bounds that are functions of them.

For K particles z_k ~ q_φ(z | x_n), drawn at once in a vectorized plate,

    log w_{k,n} = log p_θ(x_n, z_k) − log q_φ(z_k | x_n),

a tensor of shape [K, N]. Every bound the project reports is a function of it:

    ELBO      L_1(x_n)   = (1/K) Σ_k log w_{k,n}                          (Kingma & Welling 2014)
    IWAE      L_K(x_n)   = log (1/K) Σ_k w_{k,n}                          (Burda et al. 2016)

The weights are per data point, so these are the per-data-point bounds, correct for models
whose latent variables are all local (inside the ``data`` plate); a model with global latents
β has per-point weights only given β (``given_globals``). Discrete sites of the model
marked for enumeration (``config_enumerate``) and not sampled by the guide are summed out
exactly, log w = log Σ_c p_θ(x, z, c) − log q_φ(z | x); with a guide that samples nothing
(a Gaussian mixture) every weight is then p(x) itself. A site observed for some points and
enumerated for the others (``obs=y, obs_mask=labelled``: semi-supervised labels) is summed
out where it is unobserved only, as Pyro's ``TraceEnum_ELBO`` does. The data plate is read from
the program (:func:`data_plate`: the plate at the rightmost dim around the model's observed sites,
whatever its name); ``max_plate_nesting`` counts the plates that can nest inside a particle (1 by
default; :func:`plate_nesting` reads it from a program). A program that does not broadcast over a
particle dimension gets its particles one pass each (``vectorized=False``, :func:`vectorizable`). The
weights are those of the unscaled program: scales it sets itself (``poutine.scale``) are taken out.

Subsampling: a model written with ``pyro.plate("data", N, subsample=idx)`` has Pyro scale every
log-density in the plate by N/B for a batch of B points. That scale belongs outside any
non-linear function of the weights (inside a log-sum-exp it would raise w to the power N/B), so
log w here is per data point with it divided out, and :func:`data_scale` gives it back to the
objectives, which multiply their per-point sums by it: an unbiased estimate of the full-data
objective, as Pyro's own ELBOs give (NumPyro's RenyiELBO does the same; pyro issue #3104).
"""

from __future__ import annotations

import contextlib
import math

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.poutine.util import site_is_subsample

from ppl_vae.device import forked_rng
from ppl_vae.errors import UsageError, failure


def log_weights(model, guide, x, *args, particles: int = 1, max_plate_nesting: int = 1, given_globals: bool = False,
                vectorized: bool = True, **kwargs):
    """log w of shape [particles, N], differentiable with respect to θ and φ.

    ``given_globals``: a model with global latents β (sites outside the data plate) gets the weights
    given β ~ q(β), log p(x_n, z_n | β) − log q(z_n | x_n), with log p(β) − log q(β) left out:
    per point, but not importance weights for log p(x_n) (see :func:`per_point`). ``vectorized``: the K
    particles drawn at once in a plate (the program must broadcast over it), or one pass each, with no
    particle dimension at all (Pyro's default), for a program that does not (:func:`vectorizable`)."""
    passes = [(particles, vectorized)] if vectorized else [(1, False)] * particles
    parts = []
    for k, plated in passes:
        guide_tr, model_tr = particle_traces(model, guide, x, *args, particles=k, max_plate_nesting=max_plate_nesting,
                                             vectorized=plated, **kwargs)
        n, plate = x.shape[0], data_plate(model_tr)
        parts.append(per_point(model_tr, k, n, max_plate_nesting, given_globals=given_globals, plate=plate)
                     - per_point(guide_tr, k, n, max_plate_nesting, observed=False, given_globals=given_globals,
                                 plate=plate))
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def particle_plate(particles: int, max_plate_nesting: int = 1):
    """The vectorized plate of K particles, left of every plate the model and guide use."""
    return pyro.plate("particles", particles, dim=-max_plate_nesting - 1)


def particle_traces(model, guide, x, *args, particles: int = 1, max_plate_nesting: int = 1, vectorized: bool = True,
                    **kwargs):
    """(guide trace, model trace) of K particles per data point, in a plate left of the program's (or, not
    ``vectorized``, one particle with no particle dimension); the model is replayed on the guide's
    samples, with the discrete sites it marks for enumeration enumerated in parallel."""
    with particle_plate(particles, max_plate_nesting) if vectorized else contextlib.nullcontext():
        guide_tr = poutine.trace(guide).get_trace(x, *args, **kwargs)
        enumerated = poutine.enum(model, first_available_dim=-max_plate_nesting - 2)
        model_tr = poutine.trace(poutine.replay(enumerated, trace=guide_tr)).get_trace(x, *args, **kwargs)
    return guide_tr, model_tr


def vectorizable(model, guide, x, *args, max_plate_nesting: int = 1, **kwargs) -> str | None:
    """None if the pair, which runs on ``x`` as it is, also runs with two particles drawn at once in a plate
    left of its plates; else how it fails, to say why particles are drawn one at a time."""
    try:
        with torch.no_grad(), forked_rng(x):
            particle_traces(model, guide, x, *args, particles=2, max_plate_nesting=max_plate_nesting, **kwargs)
    except Exception as e:  # noqa: BLE001 — a user's program can fail in any way; say how
        return failure(e)
    return None


def one_at_a_time(why: str) -> str:
    """The line that says particles are drawn one at a time, and why."""
    return (f"particles are drawn one at a time (Pyro's default), not at once: the program fails with a particle "
            f"dimension in front of its plates ({why})")


def data_plate(model_trace) -> str:
    """The name of the plate that holds the data points, found from the program, not assumed: the plate at
    the rightmost dim around the model's observed sites (``data`` in vae.py, ``documents`` in lda.py,
    ``z_minibatch`` in dmm.py). ``"data"`` when nothing is observed inside a plate (the checks then say
    so); a UsageError when observed sites sit in different plates."""
    found = {}
    for site in model_trace.nodes.values():
        if site["type"] != "sample" or not site["is_observed"] or site_is_subsample(site):
            continue
        frames = [f for f in site["cond_indep_stack"] if f.vectorized and f.dim is not None and f.name != "particles"]
        if frames:
            found.setdefault(max(frames, key=lambda f: f.dim).name, site["name"])
    if len(found) > 1:
        (a, site_a), (b, site_b) = list(found.items())[:2]
        raise UsageError(f"the model observes {site_a!r} in pyro.plate({a!r}) and {site_b!r} in pyro.plate({b!r}), so "
                         f"which plate holds the data points is ambiguous; observe every per-point site in the "
                         f"plate of the data points")
    return next(iter(found), "data")


def plate_nesting(*traces) -> int:
    """How many plates the program nests (Pyro's guess of ``max_plate_nesting``): the deepest vectorized
    plate's −dim over the traces' sample sites, at least 1. Particles go in a plate left of them all."""
    return max([1] + [-f.dim for trace in traces for site in trace.nodes.values() if site["type"] == "sample"
                      for f in site["cond_indep_stack"] if f.vectorized and f.dim is not None and f.name != "particles"])


def in_plate(site, plate: str) -> bool:
    return any(f.name == plate for f in site["cond_indep_stack"])


def data_frame(site, plate: str):
    """The frame of the data plate ``plate`` around a site, or None."""
    return next((f for f in site["cond_indep_stack"] if f.name == plate), None)


def subsample_scale(site, skip: tuple[str, ...] = ()) -> float:
    """Π N/B over the subsampled plates the site sits in (``pyro.plate(name, N, subsample=...)``), except ``skip``."""
    scale = 1.0
    for f in site["cond_indep_stack"]:
        if f.name not in skip and f.full_size is not None and f.full_size != f.size:
            scale *= f.full_size / f.size
    return scale


def own_scales(*traces) -> dict:
    """{site: the scale the program puts on it itself} for the sample sites whose ``scale`` is more than
    their plates' subsampling: ``poutine.scale`` around a site (dmm.py's KL-annealing factor) or around
    the whole program. Such a program's log-densities are not log p(x, z) but multiples of them."""
    found = {}
    for trace in traces:
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            own = site["scale"] / subsample_scale(site)
            if not (torch.all(own == 1) if torch.is_tensor(own) else own == 1):
                found.setdefault(name, own)
    return found


def describe_scale(scales: dict) -> str:
    """'site 'z' by 0.01' for the first scaled site, in words."""
    name, scale = next(iter(scales.items()))
    value = f"{scale:g}" if not torch.is_tensor(scale) else ("a tensor of scales" if scale.numel() > 1 else f"{scale.item():g}")
    return f"site {name!r} by {value}"


def data_scale(trace, plate: str | None = None) -> float:
    """N / B of a subsampled data plate (``pyro.plate("data", N, subsample=idx)``), else 1; ``plate``: its
    name (default: found from ``trace``, a model's, by :func:`data_plate`)."""
    plate = plate or data_plate(trace)
    for site in trace.nodes.values():
        frame = data_frame(site, plate) if site["type"] == "sample" else None
        if frame is not None and frame.full_size is not None and frame.full_size != frame.size:
            return frame.full_size / frame.size
    return 1.0


def enumerated_plates(trace, plate: str) -> tuple[int, ...]:
    """The dims of the plates nested inside the data plate ``plate`` that the trace's enumerated sites sit in
    (the same for every one), or () when they sit directly in the data plate or there are none."""
    found = {tuple(sorted(f.dim for f in site["cond_indep_stack"] if f.name not in (plate, "particles")))
             for name, site in trace.nodes.items() if site["type"] == "sample" and "_enumerate_dim" in site["infer"]}
    if len(found) > 1:
        raise ValueError(f"enumerated sites sit in different plates nested inside pyro.plate({plate!r}); they are "
                         f"summed out only when they share their plates")
    return found.pop() if found else ()


def data_size(trace, plate: str | None = None) -> int | None:
    """N of a subsampled data plate (``pyro.plate("data", N, subsample=idx)``, or a plate that subsamples
    itself, as lda.py's guide does), else None."""
    plate = plate or data_plate(trace)
    for site in trace.nodes.values():
        frame = data_frame(site, plate) if site["type"] == "sample" else None
        if frame is not None and frame.full_size is not None and frame.full_size != frame.size:
            return frame.full_size
    return None


def per_point(trace, particles: int, n: int, max_plate_nesting: int = 1, observed: bool = True,
              given_globals: bool = False, plate: str = "data") -> torch.Tensor:
    """Σ over the trace's sample sites of log p(site), reduced to shape [particles, n] (n points in the data
    plate ``plate``: :func:`data_plate` of the model's trace, also for the guide's), without the
    data plate's subsampling scale and without scales the program sets itself (:func:`own_scales`:
    the weights are always those of the unscaled program, log p(x, z) − log q(z | x)); enumerated values (dims left of the particle dim) are summed
    out by log-sum-exp. A site outside the data plate (a global latent) is refused, or with
    ``given_globals`` left out: its value still enters the local sites' densities."""
    trace.compute_log_prob()
    total = 0.0
    inner = tuple(range(-max_plate_nesting, -1))  # plates nested between the particle and data dims
    # enumerated sites in nested plates (lda.py's word_topics in words in documents): each plate element's
    # values are summed out apart, log Σ_k, before its plate is summed, Σ_w; the terms with enumerated dims
    # keep those plates' dims until then (every enumerated site must sit in the same nested plates)
    per_element = enumerated_plates(trace, plate)
    enumerated = 0.0
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site) or (site["is_observed"] and not observed):
            continue
        plates = {f.name for f in site["cond_indep_stack"]}
        if plate not in plates and given_globals:
            continue
        if plate not in plates:
            raise ValueError(f"sample site {name!r} is outside pyro.plate({plate!r}); per-data-point "
                             f"importance weights need every latent variable to be local")
        if "_enumerate_dim" in site["infer"]:
            # unmasked, as in TraceEnum_ELBO: a point whose value is observed (obs_mask) sums the site's
            # normalized p over its support to 1; masked to 0, the sum would count each value once, log C
            lp = site["unscaled_log_prob"]
        else:  # masked; without the data plate's N/B and without any scale the program sets itself
            lp = scale_and_mask(site["unscaled_log_prob"], subsample_scale(site, skip=(plate,)), site["mask"])
        nested = tuple(d for d in inner if lp.dim() >= -d)  # with no particle dim (one at a time) they may be fewer
        if per_element and lp.dim() > max_plate_nesting + 1:  # it has enumerated dims: sum them out first
            now = tuple(d for d in nested if d not in per_element)
            enumerated = enumerated + (lp.sum(now, keepdim=True) if now else lp)
            continue
        total = total + (lp.sum(nested) if nested else lp)
    if torch.is_tensor(enumerated):
        enumerated = enumerated.flatten(0, -(max_plate_nesting + 2)).logsumexp(0)  # [particles, inner..., n]
        total = total + enumerated.sum(inner)
    if not torch.is_tensor(total):  # no sites, e.g. a guide that samples nothing: log 1
        return total
    if total.dim() > 2:
        total = total.flatten(0, -3).logsumexp(0)
    return total.expand(particles, n)


def elbo_bound(log_w: torch.Tensor) -> torch.Tensor:
    """ELBO per data point: the mean of log w over particles."""
    return log_w.mean(0)


def iwae_bound(log_w: torch.Tensor) -> torch.Tensor:
    """IWAE bound per data point: log (1/K) Σ_k w_k, by log-sum-exp."""
    return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])
