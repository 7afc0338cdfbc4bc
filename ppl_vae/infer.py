"""The project's estimators as drop-in Pyro losses, for your own ``pyro.infer.SVI`` loop.

Each class is a ``pyro.infer.ELBO`` with Pyro's constructor conventions (``num_particles``,
``max_plate_nesting``, ``vectorize_particles``) and the estimator ``ppl_vae.fit`` trains with the
objective of the same name; its ``loss`` is −(N/B) Σ_n B(x_n) over the mini-batch, B the bound per
data point (N/B: a subsampled data plate's scale), as Pyro's ELBOs return −ELBO::

    from pyro.infer import SVI
    from pyro.optim import Adam
    from ppl_vae.infer import DReG

    svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-3}), loss=DReG(num_particles=10))
    for x in batches:
        svi.step(x)

============================  ====================================================  =====================
class                         estimator                                              paper
============================  ====================================================  =====================
:class:`IWAE`                 L_K = E log (1/K) Σ_k w_k, reparameterized gradient    Burda et al. 2016
:class:`Renyi`                L_α = 1/(1−α) E log (1/K) Σ_k w_k^(1−α)                 Li & Turner 2016
:class:`RWS`                  L_K for θ, wake-φ Σ_k w̃_k ∇_φ log q_φ(z_k | x) for φ    Bornschein & Bengio 2015
:class:`STL`                  the ELBO, path derivative only                          Roeder et al. 2017
:class:`DReG`                 L_K, doubly-reparameterized guide gradient             Tucker et al. 2019
:class:`VIMCO`                L_K, leave-one-out score function for the guide        Mnih & Rezende 2016
:class:`ScoreFunctionELBO`    the ELBO by the score function, optional baselines      Ranganath et al. 2014
:class:`FIVO`                 E log p̂_K(x_{1:T}) of a particle filter, resampling    Maddison et al. 2017;
                              every step (models in SMCFilter's step form)           Le et al. 2018
============================  ====================================================  =====================

w_k = p_θ(x, z_k) / q_φ(z_k | x) per data point, K = ``num_particles`` drawn at once in a plate left of
the program's plates (the program must broadcast over it), or with ``vectorize_particles=False`` in K
passes with no particle dimension (Pyro's default), for a program that does not. The same honesty checks as ``fit`` run at
every step, each a one-sentence :class:`~ppl_vae.errors.UsageError`: a guide site that cannot be
reparameterized under an estimator that differentiates through it, a parameter that is both θ and φ
under RWS and DReG (told apart by what the computation depends on, not by where it was registered),
a guide site marked for enumeration (these estimators would sample it), a program that scales its own
log-densities (a scale has no meaning inside the non-linear bounds), a latent site outside
``pyro.plate("data")`` (the weights are per data point).
"""

from __future__ import annotations

from ppl_vae.errors import UsageError
from ppl_vae.inference.objectives.dreg import DReGLoss
from ppl_vae.inference.objectives.iwae import IWAELoss
from ppl_vae.inference.objectives.renyi import RenyiLoss
from ppl_vae.inference.objectives.rws import RWSLoss
from ppl_vae.inference.objectives.score import ScoreELBO
from ppl_vae.inference.objectives.stl import STLLoss
from ppl_vae.inference.objectives.vimco import VIMCOLoss
from ppl_vae.inference.objectives.fivo import FIVOLoss


def _particles(num_particles: int) -> int:
    if not isinstance(num_particles, int) or num_particles < 1:
        raise UsageError(f"num_particles must be a whole number ≥ 1, got {num_particles!r}.")
    return num_particles


class IWAE(IWAELoss):
    """:class:`~ppl_vae.inference.objectives.iwae.IWAELoss` with Pyro's constructor conventions."""

    def __init__(self, num_particles: int = 1, max_plate_nesting: int = 1, vectorize_particles: bool = True):
        super().__init__(_particles(num_particles), max_plate_nesting, vectorize_particles)


class Renyi(RenyiLoss):
    """:class:`~ppl_vae.inference.objectives.renyi.RenyiLoss` with Pyro's constructor conventions; α ≠ 1."""

    def __init__(self, alpha: float = 0.5, num_particles: int = 1, max_plate_nesting: int = 1,
                 vectorize_particles: bool = True):
        if alpha == 1:
            raise UsageError("alpha = 1 is the ELBO; use pyro.infer.Trace_ELBO, or another alpha.")
        super().__init__(_particles(num_particles), alpha, max_plate_nesting=max_plate_nesting,
                         at_once=vectorize_particles)


class RWS(RWSLoss):
    """:class:`~ppl_vae.inference.objectives.rws.RWSLoss` (weights normalized per data point, so mini-batches
    are fine) with Pyro's constructor conventions."""

    def __init__(self, num_particles: int = 1, max_plate_nesting: int = 1, vectorize_particles: bool = True):
        super().__init__(_particles(num_particles), max_plate_nesting, vectorize_particles)


class VIMCO(VIMCOLoss):
    """:class:`~ppl_vae.inference.objectives.vimco.VIMCOLoss` (the IWAE bound with the leave-one-out score
    function for the guide; any guide, discrete latents included) with Pyro's constructor conventions."""

    def __init__(self, num_particles: int = 2, max_plate_nesting: int = 1, vectorize_particles: bool = True):
        if _particles(num_particles) < 2:
            raise UsageError(f"VIMCO's baseline for each particle is built from the others, so it needs "
                             f"num_particles ≥ 2, got {num_particles}.")
        super().__init__(num_particles, max_plate_nesting, vectorize_particles)


class STL(STLLoss):
    """:class:`~ppl_vae.inference.objectives.stl.STLLoss` with Pyro's constructor conventions."""

    def __init__(self, num_particles: int = 1, max_plate_nesting: int = 1, vectorize_particles: bool = True):
        super().__init__(_particles(num_particles), max_plate_nesting, vectorize_particles)


class DReG(DReGLoss):
    """:class:`~ppl_vae.inference.objectives.dreg.DReGLoss` with Pyro's constructor conventions."""

    def __init__(self, num_particles: int = 1, max_plate_nesting: int = 1, vectorize_particles: bool = True):
        super().__init__(_particles(num_particles), max_plate_nesting, vectorize_particles)


class ScoreFunctionELBO(ScoreELBO):
    """Pyro's ``TraceGraph_ELBO`` with every latent site of the guide on the score-function estimator, and
    ``baseline``: None, ``"avg"`` (a decaying average of each site's downstream cost, decay ``beta``) or
    ``"nn"`` (that average plus a learned b_ψ(x) per site; :class:`~ppl_vae.inference.objectives.score.ScoreELBO`)."""

    def __init__(self, baseline: str | None = None, beta: float = 0.9, num_particles: int = 1,
                 max_plate_nesting: int = 1, vectorize_particles: bool | None = None):
        if baseline not in (None, "avg", "nn"):
            raise UsageError(f"baseline must be None, 'avg' or 'nn', got {baseline!r}.")
        if not 0 <= beta < 1:
            raise UsageError(f"beta must be in [0, 1), got {beta}.")
        super().__init__(baseline, beta=beta, num_particles=num_particles, max_plate_nesting=max_plate_nesting,
                         vectorize_particles=num_particles > 1 if vectorize_particles is None else vectorize_particles)


class FIVO(FIVOLoss):
    """The filtering variational objective (FIVO; AESMC, Le et al. 2018; Naesseth et al. 2018): the log of a
    particle filter's unbiased estimate of p(x_{1:T}), K = ``num_particles`` particles resampled after every
    step, trained by its reparameterized gradient with the resampling terms dropped
    (:mod:`ppl_vae.inference.objectives.fivo`). The model and guide come in the step form of Pyro's
    ``SMCFilter`` (``init(state, x)`` and ``step(state, x_t)``; :mod:`ppl_vae.steps`), or are methods of
    objects that have it; called as ``svi.step(x, lengths)`` with x [B, T, ...]. The loss is −Σ over the
    batch's sequences."""

    def __init__(self, num_particles: int = 1):
        super().__init__(num_particles=_particles(num_particles))


__all__ = ["DReG", "FIVO", "IWAE", "RWS", "Renyi", "STL", "ScoreFunctionELBO", "VIMCO"]
