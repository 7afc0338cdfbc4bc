"""The score-function (REINFORCE) ELBO, with no baseline, a decaying average, or a learned b(x).

The ELBO L(θ, φ) = E_q[log p_θ(x | z)] − KL(q_φ(z | x) ‖ p(z)) = E_q[log w] is differentiated
with the log-derivative trick instead of through the sample path (Williams 1992; Ranganath,
Gerrish & Blei 2014; Mnih & Gregor 2014):

    ∇_φ L = E_q[ (log w(z) − b) ∇_φ log q_φ(z | x) ],

unbiased for any baseline b that does not depend on z. Pyro's ``TraceGraph_ELBO`` builds it,
with per-site downstream costs (Schulman et al. 2015), once the guide's latent sites are
marked non-reparameterizable. :class:`ScoreFunction` does that for any guide, a user's
included, by an effect handler around it.
"""

from __future__ import annotations

import copy

import pyro
import torch
from pyro.infer import TraceGraph_ELBO
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample
from torch import nn

from ppl_vae.models.mlp import mlp

from ppl_vae.errors import UsageError
from ppl_vae.inference.weights import elbo_bound
from ppl_vae.inference.objectives.base import AT_ANY_Z, Needs, Objective
from ppl_vae.config import default

BASELINE = "score_baseline"  # the learned baseline's name in Pyro's parameter store
BASELINE_HIDDEN = 100  # one tanh layer, as the input-dependent baseline of Mnih & Gregor 2014
_AVERAGE = "__baseline_avg_downstream_cost_"  # where TraceGraph_ELBO keeps a site's running average


def without_rsample(fn):
    """A copy of the distribution ``fn`` that samples without a path derivative.

    ``has_rsample_(False)`` is set on the innermost distribution: wrappers such as
    ``Independent`` (``.to_event``) read ``has_rsample`` from their base.
    """
    fn = copy.copy(fn)
    try:
        fn.has_rsample_(False)
    except AttributeError:  # a wrapper whose has_rsample is its base's
        fn.base_dist = without_rsample(fn.base_dist)
    return fn


class ScoreFunction(Messenger):
    """Marks the guide's latent sites non-reparameterizable and attaches a baseline to each.

    ``baseline(msg)`` returns the site's ``infer["baseline"]`` options for TraceGraph_ELBO,
    or None. Apply it outside the particle plate, so it sees the broadcast distribution.
    """

    def __init__(self, baseline=None):
        super().__init__()
        self.baseline = baseline

    def _pyro_sample(self, msg):
        if msg["is_observed"] or site_is_subsample(msg):
            return
        msg["fn"] = without_rsample(msg["fn"])
        if "baseline" in msg["infer"]:  # the program declares its own, as TraceGraph_ELBO would use it
            return
        options = self.baseline(msg) if self.baseline is not None else None
        if options is not None:
            msg["infer"] = {**msg["infer"], "baseline": options}


class ScoreELBO(TraceGraph_ELBO):
    """``TraceGraph_ELBO`` with every latent site of the guide on the score-function estimator.

    ``baseline``: None; ``"avg"``, Pyro's decaying average of each site's downstream cost,
    b̄ ← β b̄ + (1 − β) cost, kept per mini-batch position; or ``"nn"``, that average plus a
    network b_ψ(x) per site (one hidden layer) trained by Pyro on (cost − b̄ − b_ψ(x))²
    alongside θ and φ: the network learns what the average misses, as in NVIL's centred
    learning signal (Mnih & Gregor 2014); a global site (outside the data plate) keeps the average
    alone. A site whose program declares its own baseline
    (``infer={"baseline": {...}}``, e.g. AIR's ``nn_baseline`` for z_pres) keeps it, as
    ``TraceGraph_ELBO`` would.
    """

    def __init__(self, baseline: str | None = None, beta: float | None = None, **kwargs):
        super().__init__(**kwargs)
        self.baseline, self.beta = baseline, beta
        self.nets = nn.ModuleDict()  # the learned baselines, one per latent site

    def _get_trace(self, model, guide, args, kwargs):
        # called with the particle-vectorized guide, so the handler goes outside the plate
        options = {None: None, "avg": self._average, "nn": lambda msg: self._network(msg, args[0])}
        traces = super()._get_trace(model, ScoreFunction(options[self.baseline])(guide), args, kwargs)
        if self.nets:  # SVI optimizes the baselines with θ and φ; a resumed run's come from the store
            pyro.module(BASELINE, self.nets, update_module_params=True)
        return traces

    def _loss_and_surrogate_loss_particle(self, model_trace, guide_trace):
        # the running averages live in the param store; hide them from SVI's optimizer
        with pyro.poutine.block(hide_types=["param"]):
            return super()._loss_and_surrogate_loss_particle(model_trace, guide_trace)

    def _average(self, msg):
        store = pyro.get_param_store()
        name = _AVERAGE + msg["name"]
        if name in store and store[name].shape != msg["fn"].batch_shape:
            raise UsageError(f"the score-avg baseline keeps a running average per mini-batch position of shape "
                             f"{tuple(store[name].shape)}, but this batch has shape {tuple(msg['fn'].batch_shape)}; "
                             f"use equal mini-batches (drop the last, smaller one).")
        return {"use_decaying_avg_baseline": True, "baseline_beta": self.beta}

    def _network(self, msg, x):
        if not any(f.dim == -1 and f.size == x.shape[0] for f in msg["cond_indep_stack"]):
            return self._average(msg)  # a global site: one value for the batch, no per-point input to learn from
        key = msg["name"].replace(".", "_")
        x = x.reshape(x.shape[0], -1).float()  # one vector per data point, whatever the data's shape and dtype
        if key not in self.nets:
            with torch.random.fork_rng(devices=[]):  # leave the run's random stream as it was
                torch.manual_seed(0)
                self.nets[key] = mlp([x.shape[-1], BASELINE_HIDDEN, 1], "tanh").to(x.device, x.dtype)
        net = self.nets[key]
        shape = msg["fn"].batch_shape  # particles × data points: one baseline per data point
        return {**self._average(msg), "nn_baseline": lambda inp: net(inp).squeeze(-1).expand(shape),
                "nn_baseline_input": x}


def _pyro_kwargs(particles: int) -> dict:
    return dict(num_particles=particles, vectorize_particles=particles > 1, max_plate_nesting=1)


# the decaying-average baseline: one running value per mini-batch position
AVERAGED = Needs(guide=AT_ANY_Z, own_scales=True,
                 running_state="decaying-average baseline, a running state per mini-batch position")


def checked_beta(beta: float) -> float:
    if not 0 <= beta < 1:
        raise UsageError(f"--baseline-beta must be in [0, 1), got {beta}.")
    return beta


def score(particles: int = 1) -> Objective:
    """The score-function ELBO without a baseline: unbiased, and the noisiest estimator here."""
    return Objective("score", ScoreELBO(**_pyro_kwargs(particles)), particles, elbo_bound,
                     needs=Needs(guide=AT_ANY_Z, own_scales=True))


def score_avg(particles: int = 1, *, baseline_beta: float = default("baseline_beta")) -> Objective:
    """The score-function ELBO with Pyro's decaying-average baseline (decay ``baseline_beta``)."""
    loss = ScoreELBO("avg", beta=checked_beta(baseline_beta), **_pyro_kwargs(particles))
    return Objective("score-avg", loss, particles, elbo_bound, needs=AVERAGED)


def score_nn(particles: int = 1, *, baseline_beta: float = default("baseline_beta"),
             baseline_lr_factor: float = default("baseline_lr_factor")) -> Objective:
    """The score-function ELBO with a decaying average plus a learned baseline b_ψ(x) (Mnih & Gregor 2014).

    The average decays at ``baseline_beta``; the network's parameters learn at
    ``baseline_lr_factor`` times the run's learning rate.
    """
    def lr_factor(param_name) -> float:
        return baseline_lr_factor if param_name and param_name.startswith(BASELINE) else 1.0

    loss = ScoreELBO("nn", beta=checked_beta(baseline_beta), **_pyro_kwargs(particles))
    return Objective("score-nn", loss, particles, elbo_bound, lr_factor, needs=AVERAGED)
