"""The ELBO with discrete latent variables summed out exactly (Pyro's ``TraceEnum_ELBO``, with the guide's
discrete latents summed too)."""

from __future__ import annotations

import pyro.distributions as dist
import torch
from pyro.infer import TraceEnum_ELBO
from pyro.poutine.messenger import Messenger

from ppl_vae.errors import Refusal
from ppl_vae.inference.weights import elbo_bound
from ppl_vae.inference.objectives.base import Needs, Objective, is_discrete

# the most joint values of the guide's discrete latents it sums over: 12 bits (each value is a pass of the model)
MOST_VALUES = 2 ** 12


class JointValues(dist.Independent):
    """Independent discrete coordinates (a vector of bits, of categories) as one site whose every joint value is
    enumerable: Pyro enumerates one coordinate at a time and stops at a vector (torch's ``Independent`` raises
    "Enumeration over cartesian product is not implemented"), so a sigmoid belief network's bits could not be
    summed. The density is ``Independent``'s; only ``enumerate_support`` is added."""

    has_enumerate_support = True

    @property
    def coordinates(self) -> int:
        """How many coordinates a value has, each taking one of the base distribution's values."""
        base = self.base_dist
        return base.batch_shape[len(base.batch_shape) - self.reinterpreted_batch_ndims:].numel()

    def enumerate_support(self, expand: bool = True) -> torch.Tensor:
        base, n = self.base_dist, self.coordinates
        one = base.enumerate_support(expand=False)            # [C, 1, ..., 1, *base event]
        one = one.reshape(one.shape[:1] + base.event_shape)   # the C values of one coordinate
        index = torch.cartesian_prod(*[torch.arange(one.shape[0], device=one.device)] * n)
        values = one[index.reshape(-1, n)].reshape((-1,) + self.event_shape)  # [C^n, *event]
        values = values.reshape(values.shape[:1] + (1,) * len(self.batch_shape) + self.event_shape)
        return values.expand(values.shape[:1] + self.batch_shape + self.event_shape) if expand else values


def values_of(fn) -> tuple[int, int] | None:
    """(C, n): a discrete site takes C^n joint values (n coordinates of C values each); None if it has none to
    list (a Poisson's)."""
    if fn.has_enumerate_support:
        return fn.enumerate_support(expand=False).shape[0], 1
    if isinstance(fn, dist.Independent) and fn.base_dist.has_enumerate_support:
        return (fn.base_dist.enumerate_support(expand=False).shape[0],
                JointValues(fn.base_dist, fn.reinterpreted_batch_ndims).coordinates)
    return None


def alternatives(needs: Needs) -> bool:
    return not needs.reparameterized and not needs.enumeration


class SumGuide(Messenger):
    """Marks every discrete latent site of the guide for parallel enumeration, a vector of coordinates as one
    site over all its joint values (:class:`JointValues`); refuses a site with no values to list, or more
    joint values in all than :data:`MOST_VALUES`."""

    def __init__(self):
        super().__init__()
        self.values, self.sites = 1, []

    def _pyro_sample(self, msg):
        fn = msg["fn"]
        if msg["is_observed"] or not is_discrete(fn):
            return
        name, counted = msg["name"], values_of(fn)
        if counted is None:
            raise Refusal(f"the enum objective sums the guide's discrete latents over their values, and site {name!r} "
                          f"draws from {type(fn).__name__}, whose values it cannot list", alternatives)
        (c, n), self.sites = counted, [*self.sites, name]
        self.values *= c ** n
        if self.values > MOST_VALUES:
            what = f"site {name!r} takes {c}^{n}" if len(self.sites) == 1 else \
                f"sites {', '.join(map(repr, self.sites))} take {self.values}"
            raise Refusal(f"the enum objective sums the guide's discrete latents over every joint value, and {what} "
                          f"joint values, more than the {MOST_VALUES} it sums at most", alternatives,
                          otherwise="give the guide at most 12 bits")
        msg["infer"] = {**msg["infer"], "enumerate": "parallel"}
        if not fn.has_enumerate_support:
            msg["fn"] = JointValues(fn.base_dist, fn.reinterpreted_batch_ndims)


class EnumLoss(TraceEnum_ELBO):
    """``TraceEnum_ELBO`` on the guide with its discrete latents marked for enumeration (:class:`SumGuide`)."""

    def _get_traces(self, model, guide, args, kwargs):
        return super()._get_traces(model, SumGuide()(guide), args, kwargs)


def enum(particles: int = 1) -> Objective:
    """The ELBO with every discrete latent summed out exactly, by Pyro's ``TraceEnum_ELBO`` (Obermeyer et al.
    2019, tensor variable elimination):

        L(θ, φ) = E_{q(z | x)}[ Σ_b q(b | x, z) log Σ_c p_θ(x, z, b, c) / (q_φ(z | x) q_φ(b | x, z)) ],

    c the model's sites marked by ``config_enumerate`` and absent from the guide, summed over their support;
    b the guide's discrete latents (y in ss_vae_M2.py, the bits of a sigmoid belief network), each summed
    over its values weighted by q instead of sampled — a vector of bits or categories over all its joint
    values, which Pyro alone does not enumerate (up to :data:`MOST_VALUES` in all, e.g. 12 bits; a larger
    guide is refused in one sentence); z the guide's continuous latents, sampled. With no z, L and its
    gradient are exact: a gradient with no variance, the reference the estimators for discrete latents
    (score function, VIMCO, DisARM) are compared with. When the guide samples nothing (a Gaussian mixture,
    whose assignment c is enumerated and whose parameters are point estimates) L = log p(x), and
    maximizing it is maximum likelihood.

    The test bound needs no override of :meth:`Objective.test_bound`: it is the ELBO per data point from
    the weights of :mod:`ppl_vae.inference.weights`, which sum the model's enumerated sites out by
    log-sum-exp and draw the guide's: the same L, the exact log p(x) for the mixture.
    """
    loss = EnumLoss(max_plate_nesting=1, num_particles=particles, vectorize_particles=particles > 1)
    return Objective("enum", loss, particles, elbo_bound,
                     needs=Needs(own_scales=True, enumeration=True, enumerates_guide=True, sums_out=True,
                                 sums_guide=True))


__all__ = ["MOST_VALUES", "JointValues", "enum"]
