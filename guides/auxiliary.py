"""The auxiliary-variable encoder (Ranganath, Tran & Blei 2016, hierarchical variational models;
Maaløe, Sønderby, Sønderby & Winther 2016, auxiliary deep generative models).

    q_φ(a, z | x) = q_φ(a | x) q_φ(z | a, x),

both diagonal Gaussians on the encoder's features h_φ(x): a ~ N(μ_a(h), σ_a(h)²), and
z ~ N(μ_z(h, a), σ_z(h, a)²) with (μ_z, σ_z) a one-hidden-layer network of (h, a). The marginal
q_φ(z | x) = ∫ q(a | x) q(z | a, x) da is a continuous mixture of Gaussians, more expressive than one
Gaussian, but its density is not known in closed form. The bound uses a learned reverse model
r_ψ(a | z, x), a diagonal Gaussian from (g_ψ(x), z), in its place:

    L_aux(x) = E_q[log p_θ(x, z) + log r_ψ(a | z, x) − log q_φ(a | x) − log q_φ(z | a, x)]
             = ELBO[q_φ(z | x)] − E_q(z|x) KL(q(a | z, x) ‖ r_ψ(a | z, x)) ≤ log p_θ(x),

tight for the marginal when r is the guide's own posterior over a. In Pyro this is the plain ELBO of
the augmented model p_θ(x, z) r_ψ(a | z, x) (:class:`ReverseModel`): r integrates to one over a,
so the augmented model's evidence is p_θ(x), and every estimator that importance-weights with
w = p_θ(x, z) r_ψ(a | z, x) / q_φ(a, z | x) — the IWAE and Rényi bounds, the test-set log p̂_K(x) —
bounds or estimates log p_θ(x) itself (the IWAE form over (a, z): Sobolev & Vetrov 2019).

Both factors of q are reparameterized Gaussians whose log density is known at any (a, z), so the
guide trains with every objective that differentiates through samples or rescores them (``elbo``,
``iwae``, ``renyi``, ``rws``, ``stl``, ``dreg``, the score-function ELBOs); r's parameters ψ sit in
the model and get the model's gradient. Refused: ``elbo-analytic`` (no KL term has a closed form:
r depends on the sampled z) and ``mmd`` (it compares q's latents with the prior, and a has none).
Sites ``a`` and ``z`` inside ``pyro.plate("data")``, in the model and the guide alike.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn

from ppl_vae.errors import UsageError
from ppl_vae.models.mlp import ACTIVATIONS

from .features import encoder_features
from ppl_vae.models.mlp import loc_and_scale


def expand_to(h: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-point features h [N, H] broadcast over the leading (particle) dims of ``like`` [..., N, d]."""
    return h.expand(*like.shape[:-1], h.shape[-1])


class ConditionalGaussian(nn.Module):
    """N(μ, diag σ²) with (μ, s) a one-hidden-layer network of (h, c): h per point, c per sample."""

    def __init__(self, features: int, given: int, out: int, activation: str):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(features + given, features), ACTIVATIONS[activation](),
                                 nn.Linear(features, 2 * out))

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> dist.Distribution:
        loc, scale = loc_and_scale(self.net(torch.cat([expand_to(h, c), c], -1)))
        return dist.Normal(loc, scale).to_event(1)


class AuxiliaryMarginal(torch.distributions.Distribution):
    """q_φ(z | x) of the auxiliary guide: samples (a, then z), no closed-form density or mean."""

    def __init__(self, guide: "AuxiliaryGaussian", x: torch.Tensor):
        self.guide_module, self.x = guide, x
        super().__init__(batch_shape=x.shape[:1], event_shape=(guide.latent_dim,), validate_args=False)

    def sample(self, sample_shape=torch.Size()):
        with torch.no_grad():
            h = self.guide_module.body(self.x)
            a = self.guide_module.q_a(h).sample(sample_shape)
            return self.guide_module.q_z(h, a).sample()

    def log_prob(self, value):
        raise UsageError("the auxiliary guide's q(z | x) is a continuous mixture over a with no closed-form density, "
                         "so KL(q(z | x) ‖ p(z)) and other uses of log q(z | x) are not available for it; its bound "
                         "and log p(x) estimates (train, evaluate) are.")


class AuxiliaryGaussian(nn.Module):
    """``--guide auxiliary``: q(a | x) q(z | a, x), with the reverse model r(a | z, x) in :class:`ReverseModel`."""

    latent_sites = ("z",)  # the model's own; the auxiliary a is added to the model and the guide alike
    lacks = {"closed_form_kl": "the reverse model r(a | z, x) depends on the sampled z, so no term of the bound has "
                               "a closed-form KL",
             "prior_latents": "its auxiliary a has no prior to draw from"}
    point_mass = False

    @classmethod
    def from_config(cls, config, data):
        return cls(*encoder_features(config, data), config.pair.latent_dim, config.pair.activation)

    def __init__(self, body: nn.Module, features: int, latent_dim: int, activation: str = "relu",
                 aux_dim: int | None = None):
        """``aux_dim``: the dimension of a, default the latent dimension."""
        super().__init__()
        self.latent_dim, self.aux_dim = latent_dim, aux_dim or latent_dim
        self.body = body
        self.head_a = nn.Linear(features, 2 * self.aux_dim)
        self.q_z = ConditionalGaussian(features, self.aux_dim, latent_dim, activation)

    def q_a(self, h: torch.Tensor) -> dist.Distribution:
        loc, scale = loc_and_scale(self.head_a(h))
        return dist.Normal(loc, scale).to_event(1)

    def dist(self, x: torch.Tensor) -> AuxiliaryMarginal:
        """q_φ(z | x), for figures that draw from it (its mean is estimated from draws)."""
        return AuxiliaryMarginal(self, x)

    def guide(self, x: torch.Tensor, idx=None):
        pyro.module("encoder", self)
        h = self.body(x)
        with pyro.plate("data", x.shape[0]):
            a = pyro.sample("a", self.q_a(h))
            pyro.sample("z", self.q_z(h, a))

    @staticmethod
    def reverse_model(model: nn.Module, config, data) -> "ReverseModel":
        body, features = encoder_features(config, data)
        return ReverseModel(model, Reverse(body, features, config.pair.latent_dim, config.pair.latent_dim,
                                           config.pair.activation))


class Reverse(nn.Module):
    """r_ψ(a | z, x): a diagonal Gaussian from a one-hidden-layer network of (g_ψ(x), z)."""

    def __init__(self, body: nn.Module, features: int, latent_dim: int, aux_dim: int, activation: str):
        super().__init__()
        self.body = body
        self.head = ConditionalGaussian(features, latent_dim, aux_dim, activation)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> dist.Distribution:
        return self.head(self.body(x), z)


class ReverseModel(nn.Module):
    """The model p_θ(x, z) with the reverse model r_ψ(a | z, x) appended: p_θ(x, z) r_ψ(a | z, x).

    Runs ``base.model`` as it is, then draws ``a`` ~ r_ψ(a | z, x) in ``pyro.plate("data")`` given the
    value the run gave site ``z`` (the guide's, when replayed against it). Everything else a model
    offers (its prior, decoder, exact log p(x)) is the base model's: the augmented model has the same
    p_θ(x, z) and evidence."""

    def __init__(self, base: nn.Module, reverse: Reverse):
        super().__init__()
        self.base, self.reverse = base, reverse

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["base"], name)

    def model(self, x: torch.Tensor, idx=None):
        pyro.module("reverse", self.reverse)
        with poutine.trace() as tape:
            self.base.model(x, idx)
        # the data plate again, its subsample site hidden: the base model's already holds that name
        with poutine.block(hide=["data"]), pyro.plate("data", x.shape[0]):
            pyro.sample("a", self.reverse(x, tape.trace.nodes["z"]["value"]))
