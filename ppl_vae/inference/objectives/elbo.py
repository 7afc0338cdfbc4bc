"""The reparameterized ELBO (Kingma & Welling 2014)."""

from __future__ import annotations

import warnings

from pyro.infer import JitTrace_ELBO, Trace_ELBO

from ppl_vae.inference.weights import elbo_bound
from ppl_vae.inference.objectives.base import Objective
from ppl_vae.config import default


def elbo(particles: int = 1, *, jit: bool = default("jit")) -> Objective:
    """Pyro's ``Trace_ELBO``:

        L(θ, φ) = E_q[log p_θ(x | z)] − KL(q_φ(z | x) ‖ p(z)),

    estimated with K particles z_k = μ_φ(x) + σ_φ(x) ⊙ ε_k, averaged, and differentiated
    through the sample path. ``jit`` uses ``JitTrace_ELBO`` (static shapes only).
    """
    if jit:
        warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")
    kwargs = dict(num_particles=particles, vectorize_particles=particles > 1, max_plate_nesting=1)
    loss = JitTrace_ELBO(ignore_jit_warnings=True, **kwargs) if jit else Trace_ELBO(**kwargs)
    return Objective("elbo", loss, particles, elbo_bound)
