"""RELAX (Grathwohl et al. 2018): the score function for Bernoulli latents with a learned, reparameterized
control variate, its parameters trained to minimize the estimator's variance.

For a guide whose latents are independent Bernoulli variables b_i ~ Bern(σ(α_i)), α = α_φ(x), and the
ELBO's integrand f(b) = log p_θ(x, b) − log q_φ(b | x) per data point, draw u, v ~ U(0, 1)^D and

    z = α + log u − log(1 − u),   b = H(z) = 1[z > 0],
    z̃ = α + log u' − log(1 − u'),  u' = b (1 − σ(α) + v σ(α)) + (1 − b) v (1 − σ(α)),

z̃ a draw of z given b that depends on α through u'. With a control variate c_ψ(z, x), any differentiable
function of z (and of the data point, which the expectation holds fixed),

    ĝ = [f(b) − c_ψ(z̃, x)] ∂/∂α log q(b | α) + ∂/∂α c_ψ(z, x) − ∂/∂α c_ψ(z̃, x)

is unbiased for ∂/∂α E_q[f(b)] whatever ψ is: the two reparameterized terms have the expectation of the
score term they correct. So ψ is trained to make it precise: by ∂/∂ψ Σ ĝ², a one-draw estimate of the
gradient of the estimator's variance, since E ĝ does not depend on ψ (the variance is taken per logit α_i,
summed over the batch's logits). Here

    c_ψ(z, x) = f̄ + r_ψ(σ(z / λ), x),

r_ψ an MLP of the relaxed sample and the data point, its temperature λ learned with it (the paper's
free-form control variate, without REBAR's relaxed-f term: evaluating the model at relaxed latents is not
something a Pyro program offers in general), and f̄ a running average of f − r_ψ over past steps (decay
``--baseline-beta``, kept in Pyro's parameter store so that a checkpoint holds it), which puts c_ψ at the
scale of f (tens of nats) from the first step, so that r_ψ only learns how f varies; f̄ is fixed while a
step draws, so ĝ stays unbiased.
The φ-gradient is ĝ backpropagated through α_φ(x) (E_q[∇_φ (−log q_φ(b | x))] = 0 is dropped, as for DisARM);
the θ-gradient is the ELBO's, ∇_θ log p_θ(x, b). With K particles, the mean of K independent estimates; the
bound reported is the ELBO.
"""

from __future__ import annotations

from dataclasses import replace

import pyro
import torch
from pyro.poutine.messenger import Messenger
from torch import nn

from ppl_vae.device import forked_rng
from ppl_vae.config import default
from ppl_vae.errors import Refusal
from ppl_vae.models.mlp import mlp
from ppl_vae.inference.objectives.base import AT_ANY_Z, Objective
from ppl_vae.inference.objectives.disarm import bernoulli, logits_of, scores_any_latent, unwrapped
from ppl_vae.inference.objectives.score import checked_beta
from ppl_vae.inference.objectives.weighted import Particles, WeightedLoss, latent_sites
from ppl_vae.inference.weights import elbo_bound

CONTROL = "relax_control"  # the control variate's name in Pyro's parameter store
LEVEL = "relax_level"  # its running level f̄, in the store too: a checkpoint keeps it
CONTROL_HIDDEN = 200


class Noise(Messenger):
    """Each latent Bernoulli site drawn as b = 1[z > 0], z = α + logit(u), u ~ U(0, 1); ``u[name]``: its u."""

    def __init__(self):
        super().__init__()
        self.u = {}

    def _pyro_sample(self, msg):
        base = bernoulli(msg)
        if msg["is_observed"] or msg["value"] is not None or base is None:
            return
        probs = base.probs.expand(msg["fn"].batch_shape + msg["fn"].event_shape)
        u = torch.rand_like(probs)
        msg["value"] = (u > 1 - probs).to(probs.dtype)  # z > 0 ⇔ u > 1 − σ(α)
        self.u[msg["name"]] = u


class Control(nn.Module):
    """c_ψ(z, x) = r_ψ(σ(z / λ), x): one value per data point, λ = exp(log λ) learned with r."""

    def __init__(self, latent_dim: int, x_dim: int):
        super().__init__()
        self.log_temperature = nn.Parameter(torch.tensor(-0.7))  # λ = 0.5, the papers' starting temperature
        self.net = mlp([latent_dim + x_dim, CONTROL_HIDDEN, 1], "tanh")

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        relaxed = torch.sigmoid(z / self.log_temperature.exp())
        return self.net(torch.cat([relaxed, x], -1)).squeeze(-1)


class RELAXLoss(WeightedLoss):
    """The ELBO with the RELAX gradient for the guide; see the module's docstring."""

    name = "relax"
    # θ by the ELBO's gradient, φ by the estimator at the draw it makes itself, ψ by the estimator's variance
    needs = replace(WeightedLoss.needs, guide=AT_ANY_Z, reparameterized=False, sums_out=False, splits_roles=True,
                    batch_statistic="control variate level, a running mean of each mini-batch's f")

    def __init__(self, particles: int = 1, max_plate_nesting: int = 1, beta: float = 0.9):
        super().__init__(particles=particles, max_plate_nesting=max_plate_nesting)
        self.control, self.beta = None, beta

    def bound(self, log_w):
        return elbo_bound(log_w)

    def draw(self, model, guide, x, *args, **kwargs) -> Particles:
        with Noise() as noise:
            p = super().draw(model, guide, x, *args, **kwargs)
        sites = latent_sites(p.guide_trace)
        for name, site in sites:
            if bernoulli(site) is None:
                raise Refusal(f"relax is an estimator for Bernoulli latents, and the guide's site {name!r} draws from "
                              f"{unwrapped(site).__name__}", scores_any_latent)
        if len(sites) != 1:
            raise Refusal(f"relax learns one control variate for one site of Bernoulli latents, and the guide samples "
                          f"{len(sites)} ({', '.join(name for name, _ in sites)})", scores_any_latent,
                          otherwise="put the bits in one site")
        p.u = noise.u
        return p

    def surrogates(self, p):
        (name, site), = latent_sites(p.guide_trace)
        logits = logits_of(site)                                        # [K, N, ..., D]
        k, n = logits.shape[:2]
        alpha = logits.detach().reshape(k * n, -1).requires_grad_()   # ĝ is a gradient in α, one row per draw
        u, b = p.u[name].reshape(k * n, -1), site["value"].detach().reshape(k * n, -1)
        prob, v = torch.sigmoid(alpha), torch.rand_like(alpha)
        conditional = b * (1 - prob + v * prob) + (1 - b) * v * (1 - prob)
        z, z_tilde = alpha + logit(u), alpha + logit(conditional)
        c, x = self._control(alpha.shape[1], p.x), p.x.reshape(n, -1).repeat(k, 1)
        with torch.enable_grad():
            r_tilde = c(z_tilde, x)
            d_c, = torch.autograd.grad(c(z, x).sum(), alpha, create_graph=True)
            d_tilde, = torch.autograd.grad(r_tilde.sum(), alpha, create_graph=True)
        f = p.log_w.detach().reshape(k * n)
        store = pyro.get_param_store()
        # at the first step, each draw's level is the others' mean f: still free of its own draw
        level = store[LEVEL].detach() if LEVEL in store else (f.sum() - f) / max(f.numel() - 1, 1)
        g = (f - level - r_tilde).unsqueeze(-1) * (b - prob.detach()) + d_c - d_tilde
        store[LEVEL] = self.beta * level.mean() + (1 - self.beta) * (f - r_tilde.detach()).mean()
        self.variance = (g ** 2).sum()
        guide_term = (g.detach().reshape(logits.shape) * logits).sum() / k  # the mean of the K estimates
        return [(p.log_p.mean(0).sum(), "model"), (guide_term, "guide")]

    def terms(self, model, guide, *args, **kwargs):
        value, terms = super().terms(model, guide, *args, **kwargs)
        return value, terms + [(self.variance, list(self.control.parameters()))]

    def _control(self, latent_dim: int, x: torch.Tensor) -> Control:
        if self.control is None:
            with forked_rng(x):  # the random stream goes on as if it were not drawn, so a resumed run matches
                self.control = Control(latent_dim, x[0].numel()).to(dtype=x.dtype, device=x.device)
        return pyro.module(CONTROL, self.control, update_module_params=True)  # a resumed run: the stored ψ


def logit(u: torch.Tensor) -> torch.Tensor:
    """log u − log(1 − u), finite: u kept a float's resolution away from 0 and 1."""
    eps = torch.finfo(u.dtype).eps
    return torch.logit(u.clamp(eps, 1 - eps))


def relax(particles: int = 1, *, baseline_beta: float = default("baseline_beta")) -> Objective:
    """RELAX: the ELBO, its guide gradient by the score function with a learned control variate (Grathwohl et
    al. 2018); K draws per point, the mean of their estimates; the control variate's level decays at
    ``baseline_beta``."""
    return Objective("relax", RELAXLoss(particles, beta=checked_beta(baseline_beta)), particles, elbo_bound)
