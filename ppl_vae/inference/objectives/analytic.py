"""The ELBO with the KL term in closed form (Kingma & Welling 2014, eq. 10)."""

from __future__ import annotations

from pyro.infer import TraceMeanField_ELBO

from ppl_vae.inference.weights import elbo_bound
from ppl_vae.inference.objectives.base import Needs, Objective


def elbo_analytic(particles: int = 1) -> Objective:
    """Pyro's ``TraceMeanField_ELBO``:

        L(θ, φ) ≈ (1/K) Σ_k log p_θ(x | z_k) − KL(q_φ(z | x) ‖ p(z)),

    the reconstruction term estimated with K reparameterized particles, the KL computed
    exactly where Pyro knows it in closed form (e.g. diagonal Gaussian q against N(0, I)),
    else estimated like the rest. Same expectation as ``elbo``, lower variance away from the
    posterior; unlike log w, it is not constant when q is the exact posterior.
    """
    kwargs = dict(num_particles=particles, vectorize_particles=particles > 1, max_plate_nesting=1)
    return Objective("elbo-analytic", TraceMeanField_ELBO(**kwargs), particles, elbo_bound, recordable=True,
                     needs=Needs(guide=frozenset({"closed_form_kl"}), own_scales=True))
