"""The ELBO with discrete latent variables summed out exactly (Pyro's ``TraceEnum_ELBO``)."""

from __future__ import annotations

from pyro.infer import TraceEnum_ELBO

from ppl_vae.inference.weights import elbo_bound
from ppl_vae.inference.objectives.base import Needs, Objective


def enum(particles: int = 1) -> Objective:
    """Pyro's ``TraceEnum_ELBO`` (Obermeyer et al. 2019, tensor variable elimination):

        L(θ, φ) = E_q[log Σ_c p_θ(x, z, c) − log q_φ(z | x)],

    the ELBO in which every model site marked by ``config_enumerate`` and absent from the guide
    is summed over its support exactly, and every guide site marked by ``config_enumerate`` (y in
    ss_vae_M2.py) is summed over its values weighted by q(y | x) instead of sampled. When the guide samples nothing (a Gaussian mixture,
    whose assignment c is enumerated and whose parameters are point estimates) L = log p(x),
    and maximizing it is maximum likelihood.

    The test bound needs no override of :meth:`Objective.test_bound`: the log weights of
    :mod:`ppl_vae.inference.weights` sum the same sites out by log-sum-exp, so it is the same L per data
    point, the exact log p(x) for the mixture.
    """
    loss = TraceEnum_ELBO(max_plate_nesting=1, num_particles=particles, vectorize_particles=particles > 1)
    return Objective("enum", loss, particles, elbo_bound,
                     needs=Needs(own_scales=True, enumeration=True, enumerates_guide=True, sums_out=True))
