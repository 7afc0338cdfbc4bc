"""The Concrete (Gumbel-softmax) relaxation of discrete latents (Maddison, Mnih & Teh 2017; Jang, Gu & Poole 2017).

A Bernoulli latent b ~ Bern(σ(α)) is replaced by the continuous b̃ = σ(y) with

    y = (α + log u − log(1 − u)) / τ,   u ~ U(0, 1)        (y ~ LogitRelaxedBernoulli(τ, α)),

and a one-hot categorical z ~ Cat(π) by z̃ = softmax((log π + g) / τ), g ~ Gumbel(0, 1)^K, both
reparameterized; as the temperature τ → 0 they become the discrete draws. ``concrete`` trains the
relaxed ELBO of the relaxed model,

    L_τ(θ, φ) = E_{y ~ q_τ(y | x)} [ log p_θ(x | σ(y)) + log p_τ(y) − log q_τ(y | x) ],

where the guide's and the prior's sites are relaxed alike at the same τ, and their densities are taken
in the logit (log) space of y, where they are well behaved (Maddison et al. 2017, appendix C; the
Jacobian of σ is the same for both and cancels). L_τ is not a bound on the discrete model's log p(x):
the training value says so, and the **test bound is the ELBO of the discrete model**, with the
unrelaxed program.

``concrete-st`` is the straight-through variant (Jang et al. 2017, §2.2): the guide draws the
discrete value b = 1[y > 0] (one-hot argmax for a categorical) and passes b + b̃ − stop(b̃) on, so the
model, its likelihood and both densities see the discrete b (the training value is the discrete
ELBO's estimate) while the gradient flows through b̃ as if b were b̃ — a biased gradient.

Temperature: τ_t = max(τ_min, τ_0 exp(−r t)) at training step t (``temperature`` τ_0,
``anneal_rate`` r, ``min_temperature`` τ_min; Jang et al. anneal so; r = 0 keeps τ_0).
"""

from __future__ import annotations

import math

import torch
from pyro.distributions import Bernoulli, Independent, OneHotCategorical, TorchDistribution
from pyro.infer import Trace_ELBO
from pyro.poutine.messenger import Messenger
from torch.distributions import constraints
from torch.distributions.relaxed_bernoulli import LogitRelaxedBernoulli
from torch.distributions.relaxed_categorical import ExpRelaxedCategorical

from ppl_vae.config import default
from ppl_vae.errors import Refusal, UsageError
from ppl_vae.inference.objectives.base import Needs, Objective, is_discrete
from ppl_vae.inference.weights import elbo_bound

RELAXABLE = (Bernoulli, OneHotCategorical)


class Squashed(TorchDistribution):
    """σ(y) (or exp(y) on the log-simplex) for y from a relaxed ``base``, with its density in y's space:
    ``log_prob(v)`` is log base(y) at the y that v was drawn from (held in ``drawn``, shared by the guide's
    and the model's site of one step), else at y = σ⁻¹(v). The Jacobian of σ is left out on purpose: it is
    the same for q and p at one y, and cancels in log p − log q."""

    has_rsample = True
    arg_constraints = {}

    def __init__(self, base, drawn: dict, categorical: bool):
        self.base, self.drawn, self.categorical = base, drawn, categorical
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    @property
    def support(self):
        return constraints.simplex if self.categorical else constraints.unit_interval

    def rsample(self, sample_shape=torch.Size()):
        y = self.base.rsample(sample_shape)
        value = y.exp() if self.categorical else torch.sigmoid(y)
        self.drawn[id(value)] = (value, y)
        return value

    def log_prob(self, value):
        held = self.drawn.get(id(value))
        y = held[1] if held is not None and held[0] is value else (
            value.log() if self.categorical else torch.logit(value))
        if self.categorical:
            return self.base.log_prob(y)
        # LogitRelaxedBernoulli's density, log τ + d − 2 log(1 + e^d) with d = α − τy, by softplus: no overflow
        diff = self.base.logits - self.base.temperature * y
        return self.base.temperature.log() + diff - 2 * torch.nn.functional.softplus(diff)

    def expand(self, batch_shape, _instance=None):
        return Squashed(self.base.expand(batch_shape), self.drawn, self.categorical)


class StraightThrough(TorchDistribution):
    """The discrete site ``fn`` drawn by its relaxation at temperature τ: the value is the discrete draw
    b, carrying the relaxed b̃'s gradient (b + b̃ − stop(b̃)); its density is ``fn``'s own."""

    has_rsample = True
    arg_constraints = {}

    def __init__(self, fn, temperature: float):
        self.fn, self.temperature = fn, temperature
        super().__init__(fn.batch_shape, fn.event_shape, validate_args=False)

    @property
    def support(self):
        return self.fn.support

    def rsample(self, sample_shape=torch.Size()):
        if isinstance(self.fn, OneHotCategorical):
            tau = self.fn.logits.new_tensor(self.temperature)
            soft = ExpRelaxedCategorical(tau, logits=self.fn.logits).rsample(sample_shape).exp()
            hard = torch.nn.functional.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
        else:
            y = LogitRelaxedBernoulli(self.fn.logits.new_tensor(self.temperature), logits=self.fn.logits).rsample(
                sample_shape)
            soft, hard = torch.sigmoid(y), (y > 0).to(y.dtype)
        return hard + (soft - soft.detach())  # exactly hard in value: soft − stop(soft) is 0

    def log_prob(self, value):
        return self.fn.log_prob(value)

    def expand(self, batch_shape, _instance=None):
        return StraightThrough(self.fn.expand(batch_shape), self.temperature)


def relaxed(fn, temperature: float, drawn: dict):
    """The Concrete relaxation of a Bernoulli or one-hot categorical ``fn`` (under ``to_event`` too)."""
    if isinstance(fn, Independent):
        return Independent(relaxed(fn.base_dist, temperature, drawn), fn.reinterpreted_batch_ndims)
    if isinstance(fn, OneHotCategorical):
        return Squashed(ExpRelaxedCategorical(fn.logits.new_tensor(temperature), logits=fn.logits), drawn, True)
    return Squashed(LogitRelaxedBernoulli(fn.logits.new_tensor(temperature), logits=fn.logits), drawn, False)


def straight_through(fn, temperature: float):
    if isinstance(fn, Independent):
        return Independent(straight_through(fn.base_dist, temperature), fn.reinterpreted_batch_ndims)
    return StraightThrough(fn, temperature)


def discrete_base(fn):
    return fn.base_dist if isinstance(fn, Independent) else fn


class Relax(Messenger):
    """Every latent Bernoulli or one-hot categorical site drawn by its relaxation at ``temperature``: the
    guide's (and, unless ``straight_through``, the model's prior at the guide's value, alike); other
    discrete sites are refused. ``relaxed_sites``: the names of the guide's sites it relaxed."""

    def __init__(self, temperature: float, straight_through: bool, objective: str):
        super().__init__()
        self.temperature, self.st, self.objective = temperature, straight_through, objective
        self.drawn, self.relaxed_sites = {}, []

    def _pyro_sample(self, msg):
        fn = msg["fn"]
        if msg["is_observed"] or msg["infer"].get("enumerate") or not is_discrete(fn):
            return
        if not isinstance(discrete_base(fn), RELAXABLE):
            raise Refusal(f"{self.objective} relaxes Bernoulli and one-hot categorical latents, and site "
                          f"{msg['name']!r} draws from {type(discrete_base(fn)).__name__}",
                          lambda needs: not needs.reparameterized and not needs.enumeration,
                          otherwise="write a categorical latent as OneHotCategorical")
        if msg["value"] is None:  # the guide draws it
            msg["fn"] = straight_through(fn, self.temperature) if self.st else relaxed(fn, self.temperature, self.drawn)
            self.relaxed_sites.append(msg["name"])
        elif not self.st:  # the model's prior at the guide's relaxed value
            msg["fn"] = relaxed(fn, self.temperature, self.drawn)


class ConcreteLoss(Trace_ELBO):
    """Pyro's ``Trace_ELBO`` on the program with its discrete latents relaxed (:class:`Relax`) at the
    temperature of the current step (:meth:`at_step`, which the trainer calls before each step)."""

    def __init__(self, temperature: float, anneal_rate: float, min_temperature: float, straight_through: bool,
                 name: str, **kwargs):
        super().__init__(**kwargs)
        self.t0, self.rate, self.floor, self.st, self.name = temperature, anneal_rate, min_temperature, \
            straight_through, name
        self.temperature = temperature

    def at_step(self, step: int) -> None:
        self.temperature = max(self.floor, self.t0 * math.exp(-self.rate * step))

    def _get_trace(self, model, guide, args, kwargs):
        relax = Relax(self.temperature, self.st, self.name)
        with relax:
            traces = super()._get_trace(model, guide, args, kwargs)
        if not relax.relaxed_sites:
            raise Refusal(f"the guide samples no Bernoulli or one-hot categorical latent for {self.name} to relax, so "
                          f"it would train the plain ELBO under another name",
                          lambda needs: needs.enumerates_guide and not needs.enumeration)
        return traces


def _checked(temperature: float, anneal_rate: float, min_temperature: float) -> None:
    if not (temperature > 0 and min_temperature > 0 and math.isfinite(temperature)):
        raise UsageError(f"--temperature and --min-temperature must be positive, got {temperature} and "
                         f"{min_temperature}.")
    if not anneal_rate >= 0:
        raise UsageError(f"--anneal-rate must be 0 (a fixed temperature) or positive, got {anneal_rate}.")


def _concrete(name: str, straight: bool, particles: int, temperature: float, anneal_rate: float,
              min_temperature: float) -> Objective:
    _checked(temperature, anneal_rate, min_temperature)
    loss = ConcreteLoss(temperature, anneal_rate, min_temperature, straight, name, num_particles=particles,
                        vectorize_particles=particles > 1, max_plate_nesting=1)
    what = ("ELBO with straight-through gradients (the discrete model's)" if straight else
            "relaxed ELBO of the Concrete-relaxed model (not a bound on the discrete model's log p(x))")
    # recorded with a fixed temperature only: the record holds τ as a constant
    return Objective(name, loss, particles, elbo_bound, recordable=anneal_rate == 0, needs=Needs(own_scales=True),
                     train_quantity=what, test_quantity="ELBO of the discrete model")


def concrete(particles: int = 1, *, temperature: float = default("temperature"),
             anneal_rate: float = default("anneal_rate"),
             min_temperature: float = default("min_temperature")) -> Objective:
    """The Concrete relaxation's ELBO, trained through relaxed samples (Maddison et al. 2017)."""
    return _concrete("concrete", False, particles, temperature, anneal_rate, min_temperature)


def concrete_st(particles: int = 1, *, temperature: float = default("temperature"),
                anneal_rate: float = default("anneal_rate"),
                min_temperature: float = default("min_temperature")) -> Objective:
    """The discrete ELBO with straight-through Gumbel-softmax gradients (Jang et al. 2017)."""
    return _concrete("concrete-st", True, particles, temperature, anneal_rate, min_temperature)
