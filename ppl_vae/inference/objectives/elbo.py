"""The reparameterized ELBO (Kingma & Welling 2014)."""

from __future__ import annotations

from pyro.infer import Trace_ELBO

from ppl_vae.inference.weights import elbo_bound
from ppl_vae.inference.objectives.base import Needs, Objective


def elbo(particles: int = 1) -> Objective:
    """Pyro's ``Trace_ELBO``:

        L(θ, φ) = E_q[log p_θ(x | z)] − KL(q_φ(z | x) ‖ p(z)),

    estimated with K particles z_k = μ_φ(x) + σ_φ(x) ⊙ ε_k, averaged, and differentiated
    through the sample path.
    """
    kwargs = dict(num_particles=particles, vectorize_particles=particles > 1, max_plate_nesting=1)
    return Objective("elbo", Trace_ELBO(**kwargs), particles, elbo_bound, recordable=True,
                     needs=Needs(own_scales=True, enumerates_guide=True, sums_out=True))
