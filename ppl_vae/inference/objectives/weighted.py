"""What the importance-weighted objectives (IWAE, Rényi, RWS, STL, DReG) share.

K particles z_k ~ q_φ(z | x_n) are drawn at once in a vectorized plate ("particles", dim −2),
and the model and guide traces give, per data point, tensors of shape [K, N]:

    log p_θ(x_n, z_k),   log q_φ(z_k | x_n),   log w_{k,n} = log p_θ(x_n, z_k) − log q_φ(z_k | x_n),

by the same traces as :func:`ppl_vae.inference.weights.log_weights` (discrete model sites marked for
enumeration are summed out there too). Each objective is a bound B(log w) per data
point (its value) and one or two surrogates whose gradients with respect to the model's
parameters θ and the guide's parameters φ are its gradient estimator. :class:`WeightedLoss`
turns them into what ``pyro.infer.SVI`` expects: ``loss`` and ``loss_and_grads`` return
−Σ_n B(x_n) over the mini-batch.

Two variants of log q serve the estimators that treat the guide's gradient specially:

- log q_φ(⊥z | x), ⊥ = stop-gradient: the guide replayed on the detached latent values. Its
  φ-gradient is the score ∂/∂φ log q_φ(z) at fixed z (wake-φ of RWS).
- the path derivative (STL, DReG): log q̄(z) = log q_φ(z) − log q_φ(⊥z) + ⊥log q_φ(⊥z) has
  the value of log q_φ(z), and its gradient is d/dφ log q_φ(z(ε, φ)) minus the score term,
  i.e. the derivative along the sample path z = z(ε, φ) only (Roeder et al. 2017). Replaying
  the whole guide on detached values (rather than detaching one site at a time) also removes
  the dependence of q(z₂ | z₁) on φ through z₁'s parameters, so hierarchical guides are right.
"""

from __future__ import annotations

import contextlib
import functools

import pyro
import torch
from pyro import poutine
from pyro.infer import ELBO
from pyro.poutine.util import site_is_subsample

from ppl_vae.errors import Refusal
from ppl_vae.inference.objectives.base import WEIGHTED, Needs
from ppl_vae.inference.weights import (data_plate, data_scale, describe_scale, own_scales, particle_plate,
                                       particle_traces, per_point)


def latent_sites(trace):
    """(name, site) of the trace's unobserved sample sites, subsample sites excluded."""
    return [(name, site) for name, site in trace.nodes.items()
            if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)]


def param_tensors(trace) -> list:
    """The unconstrained leaf tensors of the trace's parameters, as SVI optimizes them."""
    return [site["value"].unconstrained() for site in trace.nodes.values() if site["type"] == "param"]


def leaves_reached(roots, stop=()) -> set[int]:
    """The ids of the leaf tensors that ``roots`` depend on through autograd's graph, not counting
    paths that pass through the nodes that made the tensors ``stop``."""
    stopped = {id(t.grad_fn) for t in stop if t.grad_fn is not None}
    found = {id(t) for t in roots if t.requires_grad and t.grad_fn is None}
    todo, seen = [t.grad_fn for t in roots if t.grad_fn is not None], set()
    while todo:
        node = todo.pop()
        if node is None or id(node) in seen or id(node) in stopped:
            continue
        seen.add(id(node))
        if hasattr(node, "variable"):  # AccumulateGrad: a leaf
            found.add(id(node.variable))
        else:
            todo.extend(child for child, _ in node.next_functions)
    return found


class Roles:
    """Which parameters are the model's (θ) and which the guide's (φ), by what the computation depends
    on, not by the trace a module was registered in (Pyro lets ``pyro.module("vae", self)`` register
    encoder and decoder in the model alone, or in both):

    - φ: the parameters that the guide's log q_φ(z | x) or its sampled values z depend on;
    - θ: the parameters that log p_θ(x, z) depends on at fixed z (paths through z are not followed).

    ``both`` are parameters in θ and in φ (an encoder that the model also uses); estimators that give θ
    and φ different gradients refuse those. ``every`` is every parameter the two traces register."""

    def __init__(self, model_traces, guide_traces, log_p, log_q):
        self._params = {id(t): t for trace in (*guide_traces, *model_traces) for t in param_tensors(trace)}
        self._traces, self._log_p, self._log_q = guide_traces, log_p, log_q
        self.every = list(self._params.values())

    @functools.cached_property
    def _reached(self) -> tuple[set[int], set[int]]:
        """(ids reached from log p at fixed z, ids reached from log q and z): walked only when asked for."""
        values = [site["value"] for trace in self._traces for _, site in latent_sites(trace)
                  if torch.is_tensor(site["value"])]
        on_q = leaves_reached([t for t in (self._log_q, *values) if torch.is_tensor(t)])
        on_p = leaves_reached([self._log_p] if torch.is_tensor(self._log_p) else [], stop=values)
        return on_p, on_q

    @property
    def model(self) -> list:
        return [t for i, t in self._params.items() if i in self._reached[0]]

    @property
    def guide(self) -> list:
        return [t for i, t in self._params.items() if i in self._reached[1]]

    @property
    def both(self) -> list:
        on_p, on_q = self._reached
        return [t for i, t in self._params.items() if i in on_p and i in on_q]

    def __getitem__(self, group: str) -> list:
        return self.every if group == "all" else getattr(self, group)


def samples_enumerated(site: str, objective: str) -> Refusal:
    """The refusal of a guide site marked for enumeration by an objective that would sample it."""
    return Refusal(f"guide site {site!r} is marked for enumeration (config_enumerate), which the {objective} objective "
                   f"does not do: it would sample the site from q instead of summing over its values as "
                   f"TraceEnum_ELBO does", lambda needs: needs.enumerates_guide, otherwise="drop config_enumerate from the guide to sample it")


class Particles:
    """K particles per data point from the guide, scored by the model and the guide: drawn at once in a
    plate (``vectorized``), or in K passes with no particle dimension, for a program that does not
    broadcast over one (Pyro's default); either way log p and log q are [K, N]."""

    def __init__(self, model, guide, x, args, kwargs, particles: int, max_plate_nesting: int = 1,
                 vectorized: bool = True):
        self.guide, self.x, self.args, self.kwargs = guide, x, args, kwargs
        self.nesting, self.vectorized = max_plate_nesting, vectorized
        self.traces = [particle_traces(model, guide, x, *args, particles=k, max_plate_nesting=max_plate_nesting,
                                       vectorized=vectorized, **kwargs)
                       for k in ([particles] if vectorized else [1] * particles)]
        self.guide_trace, self.model_trace = self.traces[0]
        self.shape = (particles, x.shape[0])
        self.plate = data_plate(self.model_trace)
        self.scale = data_scale(self.model_trace, self.plate)  # N / B of a subsampled data plate, else 1
        self.log_p = self._stacked(lambda guide_tr, model_tr: per_point(model_tr, self._k, x.shape[0],
                                                                        max_plate_nesting, plate=self.plate))
        self.log_q = self._stacked(lambda guide_tr, model_tr: per_point(guide_tr, self._k, x.shape[0],
                                                                        max_plate_nesting, observed=False,
                                                                        plate=self.plate))

    @property
    def _k(self) -> int:  # particles in one trace
        return self.shape[0] if self.vectorized else 1

    def _stacked(self, fn) -> torch.Tensor:
        """fn(guide trace, model trace) -> [k, N] of every pass, stacked to [K, N]."""
        parts = [fn(*pair) for pair in self.traces]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    @functools.cached_property
    def params(self) -> Roles:
        """θ and φ of this draw (:class:`Roles`); taken with gradients on, else nothing depends on anything."""
        return Roles([m for _, m in self.traces], [g for g, _ in self.traces], self.log_p, self.log_q)

    @property
    def log_w(self) -> torch.Tensor:
        return self.log_p - self.log_q

    def log_q_stopped(self) -> torch.Tensor:
        """log q_φ(⊥z | x), [K, N]: its φ-gradient is the score ∂/∂φ log q_φ(z) at fixed z."""
        def replayed(guide_trace, _):
            stopped = guide_trace.copy()
            for name, site in latent_sites(guide_trace):
                stopped.nodes[name] = {**site, "value": site["value"].detach()}
            with particle_plate(self._k, self.nesting) if self.vectorized else contextlib.nullcontext():
                trace = poutine.trace(poutine.replay(self.guide, trace=stopped)).get_trace(
                    self.x, *self.args, **self.kwargs)
            return per_point(trace, self._k, self.x.shape[0], self.nesting, observed=False, plate=self.plate)

        return self._stacked(replayed)

    def log_w_path(self) -> torch.Tensor:
        """log w with the path derivative of log q only: same value, no score term in ∂/∂φ."""
        stopped = self.log_q_stopped()
        return self.log_p - (self.log_q - stopped + stopped.detach())

    def require_rsample(self, objective: str) -> None:
        """Fail with one sentence unless every latent site of the guide is reparameterizable."""
        for name, site in latent_sites(self.guide_trace):
            if not site["fn"].has_rsample:
                raise Refusal(f"objective {objective!r} differentiates through the guide's samples, but site {name!r} "
                              f"draws from {type(site['fn']).__name__}, which has no reparameterized sampler",
                              lambda needs: not needs.reparameterized and not needs.enumeration, because=" instead")


class WeightedLoss(ELBO):
    """A Pyro loss (``loss``, ``loss_and_grads``) for a bound of per-data-point log weights.

    Subclasses set ``bound`` (log w [K, N] -> [N]) and implement :meth:`surrogates`, which
    returns (surrogate, parameters) pairs: each surrogate is maximized with respect to its own
    parameters only (``"all"``, ``"model"`` = θ or ``"guide"`` = φ), which is how estimators
    with different rules for θ and φ (RWS, DReG) share one step.
    """

    name = "weighted"
    # reparameterized: differentiates through the particles; splits_roles: θ and φ get different surrogates
    needs = Needs(guide=frozenset({"density"}), reparameterized=True, local_latents=WEIGHTED, sums_out=True)

    def __init__(self, particles: int = 1, max_plate_nesting: int = 1, at_once: bool = True):
        # not Pyro's vectorize_particles: it would add its own particle plate to max_plate_nesting
        super().__init__(num_particles=particles, max_plate_nesting=max_plate_nesting)
        self.particles = particles
        self.at_once = at_once  # False: K passes, for a program that does not broadcast over a particle dim

    def bound(self, log_w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def surrogates(self, p: Particles) -> list[tuple[torch.Tensor, str]]:
        raise NotImplementedError

    def draw(self, model, guide, x, *args, **kwargs) -> Particles:
        p = Particles(model, guide, x, args, kwargs, self.particles, self.max_plate_nesting, self.at_once)
        enumerated = [name for name, site in latent_sites(p.guide_trace) if site["infer"].get("enumerate") == "parallel"]
        if enumerated:
            raise samples_enumerated(enumerated[0], self.name)
        scaled = own_scales(p.model_trace, p.guide_trace)
        if scaled:
            raise Refusal(f"the program scales its own log-densities ({describe_scale(scaled)}, poutine.scale), and the "
                          f"{self.name} bound is a non-linear function of the weights log p(x, z) − log q(z | x), where "
                          f"such a scale has no meaning", lambda needs: needs.own_scales, because=", whose loss is then of the scaled program",
                          otherwise="take the scale out")
        if self.needs.reparameterized:
            p.require_rsample(self.name)
        return p

    def check_roles(self, p: Particles) -> None:
        """Refuse, with one sentence, a parameter that is both θ and φ when this estimator treats them differently."""
        if self.needs.splits_roles and p.params.both:
            name = (pyro.get_param_store().param_name(p.params.both[0]) or "?").replace("$$$", ".")
            raise Refusal(f"parameter {name!r} is used both by the model's log p(x, z) at fixed z and by the guide's "
                          f"q(z | x), and {self.name} gives the model's and the guide's parameters different gradient "
                          f"estimators, so it would have to pick one for it",
                          lambda needs: needs.local_latents == WEIGHTED and not needs.splits_roles,
                          otherwise="give the model and the guide modules of their own (registering them together in "
                                    "one pyro.module is fine)")

    def _get_trace(self, model, guide, args, kwargs):  # what pyro.infer.ELBO asks of a subclass
        p = self.draw(model, guide, *args, **kwargs)
        return p.model_trace, p.guide_trace

    def loss(self, model, guide, *args, **kwargs) -> float:
        """−(N/B) Σ_n B(x_n) over the batch (N/B: a subsampled plate's scale), without gradients."""
        with torch.no_grad():
            p = self.draw(model, guide, *args, **kwargs)
            return -p.scale * self.bound(p.log_w).sum().item()

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        """−(N/B) Σ_n B(x_n); accumulates the estimator's gradient of it into the parameters' .grad.
        The scale multiplies each per-point sum, outside every non-linear reduction of the weights."""
        return self.backward(model, guide, *args, **kwargs).item()

    def backward(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """:meth:`loss_and_grads` with the loss left on the device, a 0-dim tensor."""
        value, terms = self.terms(model, guide, *args, **kwargs)
        for i, (surrogate, params) in enumerate(terms):
            torch.autograd.backward(surrogate, inputs=params, retain_graph=i < len(terms) - 1)
        return value

    def terms(self, model, guide, *args, **kwargs) -> tuple[torch.Tensor, list]:
        """(−(N/B) Σ_n B(x_n) without gradient, [(−(N/B) × a surrogate, the parameters it trains)]) of one draw."""
        p = self.draw(model, guide, *args, **kwargs)
        self.check_roles(p)
        terms = [(-p.scale * s, p.params[group]) for s, group in self.surrogates(p)]
        return -p.scale * self.bound(p.log_w.detach()).sum(), [(s, params) for s, params in terms
                                                                 if params and s.requires_grad]
