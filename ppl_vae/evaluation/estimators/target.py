"""What every log p(x) estimator needs from a Pyro pair: its latents as one flat vector per point.

A pair whose latent variables z_n are all local (inside ``pyro.plate("data")``, dim −1) and
continuous with real support has, per data point, the functions

    log p_θ(x_n, z)   and   log q_φ(z | x_n),   z ∈ R^d,

where z is the concatenation of the guide's latent sites (in the order the guide samples
them, each flattened). :class:`Target` evaluates both at given values z of shape [P, N, d] (P
chains or particles, N points), vectorized by a ``pyro.plate("particles", P)`` left of every
plate the program uses, as :mod:`ppl_vae.inference.weights` does: the model is traced with
``poutine.condition`` on z, its discrete sites marked for enumeration (``config_enumerate``)
are summed out exactly, and a subsampled data plate's N/B scale is divided out, so each value
is per data point. Gradients with respect to z flow through both.

:func:`latent_space` checks a pair once, on one data point, before any work, and refuses with
one sentence what an estimator cannot handle: a global latent (no per-point log p(x) exists), a
model latent the guide does not sample, a latent inside a plate nested in the data plate, and,
where an estimator asks for them, a discrete or constrained latent (Laplace and AIS move z over
R^d), a point-mass guide (no q to sample or score) and a guide whose density is known only at its
own samples (a normalizing flow, scored from values cached on its forward pass).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from pyro import poutine
from pyro.distributions import Delta
from pyro.poutine.util import site_is_subsample
from torch.distributions import Independent, TransformedDistribution, constraints

from ppl_vae.data import batch_inputs
from ppl_vae.device import forked_rng
from ppl_vae.errors import UsageError, user_code
from ppl_vae.inference import weights
from ppl_vae.pair import callables


def _base(fn):
    while isinstance(fn, Independent):
        fn = fn.base_dist
    return fn


def _real(support) -> bool:
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return support is constraints.real


def _latents(trace) -> dict:
    return {name: site for name, site in trace.nodes.items()
            if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)}


@dataclass(frozen=True)
class LatentSpace:
    """The guide's latent sites and their event shapes; z [..., d] is their concatenation."""

    sites: tuple[tuple[str, tuple[int, ...]], ...]
    plate: str = "data"  # the data plate's name (:func:`ppl_vae.inference.weights.data_plate`)

    @property
    def dim(self) -> int:
        return sum(math.prod(shape) for _, shape in self.sites)

    def unflatten(self, z: torch.Tensor) -> dict:
        """{site: value [..., *event shape]} from z [..., d]."""
        out, start = {}, 0
        for name, shape in self.sites:
            size = math.prod(shape)
            out[name] = z[..., start:start + size].reshape(*z.shape[:-1], *shape)
            start += size
        return out

    def flatten(self, values: dict, batch_dims: int) -> torch.Tensor:
        """z [..., d] from {site: value}, keeping the first ``batch_dims`` dimensions."""
        return torch.cat([values[name].reshape(*values[name].shape[:batch_dims], -1) for name, _ in self.sites], -1)


def latent_space(model, guide, x, inputs: dict | None = None, *, estimator: str, needs: tuple = ()) -> LatentSpace:
    """The pair's latent space, after refusing (UsageError, one sentence) what ``estimator`` cannot do.

    ``needs``: ``"real"``: every latent continuous with support R and directly in the data plate, so that
    z is one vector per point (Laplace, AIS); ``"density"``: the
    guide is not a point mass (estimators that sample q); ``"density_anywhere"``: log q at any z, not
    only at q's own samples (AIS, whose chains move)."""
    model, guide = callables(model, guide)
    one = batch_inputs(inputs, slice(0, 1))
    with torch.no_grad(), forked_rng(x), user_code("the run's pair fails on one test point"):
        guide_tr = poutine.trace(guide).get_trace(x[:1], **one)
        model_tr = poutine.trace(poutine.replay(poutine.enum(model, first_available_dim=-2),
                                                trace=guide_tr)).get_trace(x[:1], **one)
    q_sites, p_sites = _latents(guide_tr), _latents(model_tr)
    plate = weights.data_plate(model_tr)
    for name, site in {**q_sites, **p_sites}.items():
        if not weights.in_plate(site, plate):
            raise UsageError(f"{estimator} estimates log p(x) per data point, and site {name!r} lies outside "
                             f"pyro.plate({plate!r}), a global latent shared by every point, so no per-point log p(x) "
                             f"exists; run evaluate without --estimator for the ELBO given q({name}).")
    for name, site in p_sites.items():
        if name not in q_sites and "_enumerate_dim" not in site["infer"]:
            raise UsageError(f"the model samples latent site {name!r}, which the guide does not sample and which is "
                             f"not marked for enumeration (config_enumerate), so {estimator} cannot integrate it; "
                             f"sample it in the guide or enumerate it in the model.")
    if not q_sites:
        raise UsageError(f"the guide samples no latent site, so there is no continuous latent for {estimator} to "
                         f"integrate (the model's log p(x) is its exact sum); use evaluate without --estimator.")
    sites = []
    for name, site in q_sites.items():
        fn = site["fn"]
        if "real" in needs and site["value"].shape[:-len(fn.event_shape) or None] != (1,):
            raise UsageError(f"guide site {name!r} sits in a plate nested inside pyro.plate('data'), and {estimator} "
                             f"needs each point's latents as one vector; give the site an event shape (to_event) "
                             f"instead of the inner plate.")
        if "density" in needs and isinstance(_base(fn), Delta):
            raise UsageError(f"the guide's site {name!r} is a point mass, which has no density to sample or score, "
                             f"so {estimator} cannot use it; use --estimator laplace, which needs only the model.")
        if "real" in needs and not _real(fn.support):
            kind = "discrete" if fn.support.is_discrete else f"constrained ({type(fn.support).__name__})"
            raise UsageError(f"guide site {name!r} is {kind}, and {estimator} moves the latents over all of R^d, so "
                             f"it needs every latent continuous with real support; use --estimator is, elbo or "
                             f"perturbative, which only sample q.")
        if "density_anywhere" in needs and isinstance(_base(fn), TransformedDistribution):
            raise UsageError(f"the guide's site {name!r} is a normalizing flow, whose density is known only at its own "
                             f"samples (from values cached on the forward pass), and {estimator} needs log q(z | x) "
                             f"wherever its chains move; use --estimator is or perturbative, or a Gaussian guide.")
        sites.append((name, tuple(fn.event_shape)))
    return LatentSpace(tuple(sites), plate)


class Target:
    """log p_θ(x, z) and log q_φ(z | x) of the points ``x`` [N, ...] at z [P, N, d], each [P, N]."""

    def __init__(self, model, guide, space: LatentSpace, x, inputs: dict | None = None, *,
                 max_plate_nesting: int = 1):
        self.model, self.guide = callables(model, guide)
        self.space, self.x, self.inputs, self.nesting = space, x, inputs or {}, max_plate_nesting
        self.n = x.shape[0]
        self._q = None  # q of a one-site guide, built on first use

    def _one_site_q(self):
        """A one-site guide's q(z | x) depends on x alone: built once, scored at any z (None otherwise)."""
        if self._q is None and len(self.space.sites) == 1:
            with torch.no_grad():
                trace = poutine.trace(self.guide).get_trace(self.x, **self.inputs)
            site = trace.nodes[self.space.sites[0][0]]
            self._q = site["fn"] if site["mask"] is None else False
        return self._q or None

    def _values(self, z):
        """The sites' values, with z's particle dim left of the plates nested between it and the data plate."""
        pad = (1,) * (self.nesting - 1)
        return {k: v.reshape(v.shape[0], *pad, *v.shape[1:]) for k, v in self.space.unflatten(z).items()}

    def log_joint(self, z: torch.Tensor) -> torch.Tensor:
        """log p_θ(x_n, z_{p,n}), discrete sites marked for enumeration summed out."""
        particles = z.shape[0]
        with weights.particle_plate(particles, self.nesting):
            conditioned = poutine.condition(self.model, data=self._values(z))
            enumerated = poutine.enum(conditioned, first_available_dim=-self.nesting - 2)
            trace = poutine.trace(enumerated).get_trace(self.x, **self.inputs)
        return weights.per_point(trace, particles, self.n, self.nesting, plate=self.space.plate)

    def log_q(self, z: torch.Tensor) -> torch.Tensor:
        """log q_φ(z_{p,n} | x_n)."""
        q = self._one_site_q()
        if q is not None:
            return q.log_prob(self.space.unflatten(z)[self.space.sites[0][0]])
        particles = z.shape[0]
        with weights.particle_plate(particles, self.nesting):
            trace = poutine.trace(poutine.condition(self.guide, data=self._values(z))).get_trace(self.x, **self.inputs)
        return weights.per_point(trace, particles, self.n, self.nesting, plate=self.space.plate)

    def sample_q(self, particles: int) -> torch.Tensor:
        """z [P, N, d] drawn from q_φ(z | x_n)."""
        with torch.no_grad(), weights.particle_plate(particles, self.nesting):
            trace = poutine.trace(self.guide).get_trace(self.x, **self.inputs)
        values = {name: trace.nodes[name]["value"].reshape(particles, self.n, *shape)
                  for name, shape in self.space.sites}
        return self.space.flatten(values, 2)

    def guide_mean(self) -> torch.Tensor:
        """z [N, d] with each site at the mean of its q given the sites before it (the guide run at its means);
        a site whose distribution has no closed-form mean (a flow) at one draw of q."""
        with torch.no_grad():
            trace = poutine.trace(_AtMean()(self.guide)).get_trace(self.x, **self.inputs)
        return self.space.flatten({name: trace.nodes[name]["value"] for name, _ in self.space.sites}, 1)


class _AtMean(poutine.messenger.Messenger):
    """Sets each latent sample site to its distribution's mean (a draw where none is known)."""

    def _pyro_sample(self, msg):
        if msg["is_observed"] or msg["value"] is not None or site_is_subsample(msg):
            return
        try:
            msg["value"] = msg["fn"].mean
        except NotImplementedError:
            pass


def value_and_grad(fn, z: torch.Tensor):
    """(fn(z) [P, N], ∇_z Σ fn(z) [P, N, d]): each point's value depends on its own z only."""
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        value = fn(z)
        grad, = torch.autograd.grad(value.sum(), z)
    return value.detach(), grad



def result(name: str, quantity: str, values: torch.Tensor, seconds: float, **extra) -> dict:
    """An estimator's result: ``estimate`` (the mean of ``values``, nats per data point) and ``se`` (its
    standard error over the points), ``seconds``, what the number is (``quantity``), ``n`` points, the
    estimator's own fields, and ``per_point`` (the tensor; not written to eval.json)."""
    n = values.numel()
    se = values.std().item() / math.sqrt(n) if n > 1 else float("nan")
    return {"estimator": name, "quantity": quantity, "estimate": values.mean().item() if n else float("nan"),
            "se": se, "seconds": seconds, "n": n, **extra, "per_point": values.detach()}
