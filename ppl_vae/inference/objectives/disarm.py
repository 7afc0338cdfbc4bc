"""Antithetic gradients for Bernoulli latents: ARM (Yin & Zhou 2019) and DisARM (Dong, Mnih & Tucker 2020).

For a guide whose latents are independent Bernoulli variables b_i ~ Bern(σ(α_i)), α = α_φ(x), and the
ELBO's integrand f(b) = log p_θ(x, b) − log q_φ(b | x) per data point, both estimators draw one
u ~ U(0, 1)^D and the antithetic pair

    b = 1[u < σ(α)],   b̃ = 1[1 − u < σ(α)],

each distributed as q, and estimate ∂/∂α_i E_q[f(b)] from f(b) and f(b̃) alone:

    ARM:     g_i = (f(b̃) − f(b)) (u_i − ½),
    DisARM:  g_i = ½ (f(b) − f(b̃)) (−1)^{b̃_i} 1[b_i ≠ b̃_i] σ(|α_i|),

DisARM being ARM with u integrated out given the pair, so its variance is never larger. Both are
unbiased; the φ-gradient is g backpropagated through α_φ(x) (the term E_q[∇_φ (−log q_φ(b | x))] = 0 is
dropped). The θ-gradient is the ELBO's, ∇_θ ½ [log p_θ(x, b) + log p_θ(x, b̃)]. The bound reported is
the ELBO, averaged over the pair.

A hierarchical guide, q(b₁ | x) q(b₂ | b₁) ⋯ q(b_L | b_{L−1}) (the two-layer sigmoid belief network's), is
estimated layer by layer as both papers do: for each layer l, one draw of b_{<l} shared by the pair, the
antithetic pair at layer l given it, and each member's own draw of b_{>l} given its b_l; then g for α_l
from that draw's f, backpropagated through α_l = α_φ(b_{l−1}) alone. That is L draws of the pair per step,
each unbiased for its layer's share of the gradient; θ and the bound come from the first.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch.distributions import Bernoulli, Independent
from pyro.poutine.messenger import Messenger

from ppl_vae.errors import Refusal, UsageError
from ppl_vae.inference.objectives.base import AT_ANY_Z, Objective
from ppl_vae.inference.objectives.weighted import Particles, WeightedLoss, latent_sites
from ppl_vae.inference.weights import elbo_bound


class Antithetic(Messenger):
    """Each latent Bernoulli site, in a plate of two particles at ``dim``, drawn as the pair (1[u < p], 1[1 − u < p])
    from one u ~ U(0, 1); ``u[name]``: the pair (u, 1 − u) of each site, stacked along the particle dimension.
    With ``only``: that site alone is drawn so, the sites in ``shared`` once for both particles (1[u < p], the
    same u), and any other as the program says, each particle its own."""

    def __init__(self, dim: int, only: str | None = None, shared=()):
        super().__init__()
        self.dim, self.only, self.shared, self.u = dim, only, set(shared), {}

    def _pyro_sample(self, msg):
        fn, name = msg["fn"], msg["name"]
        base = fn.base_dist if isinstance(fn, Independent) else fn
        if msg["is_observed"] or msg["value"] is not None or not isinstance(base, Bernoulli):
            return
        if self.only is not None and name != self.only and name not in self.shared:
            return
        shape = fn.batch_shape + fn.event_shape
        at = len(fn.batch_shape) + self.dim  # the particle dimension, counted from the left
        if at < 0 or shape[at] != 2:
            return  # not in the pair's plate: drawn as the program says, and refused by DisARMLoss.surrogates
        probs = base.probs.expand(shape)
        u = torch.rand(shape[:at] + (1,) + shape[at + 1:], dtype=probs.dtype, device=probs.device)
        if name in self.shared:  # upstream of the layer drawn in pairs: its shared b_{<l}
            msg["value"] = (u < probs.narrow(at, 0, 1)).to(probs.dtype).expand(shape)
            return
        pair = torch.cat([u, 1 - u], at)
        msg["value"] = (pair < probs).to(probs.dtype)
        self.u[name] = pair


def unwrapped(site) -> type:
    """The class of the site's distribution under ``to_event``."""
    fn = site["fn"]
    return type(fn.base_dist if isinstance(fn, Independent) else fn)


def bernoulli(site):
    """The site's Bernoulli distribution (under ``to_event`` too), or None."""
    fn = site["fn"]
    base = fn.base_dist if isinstance(fn, Independent) else fn
    return base if isinstance(base, Bernoulli) else None


def scores_any_latent(needs) -> bool:
    """The objectives a refusal here advises: those that score the guide (any latent type, any program)."""
    return not needs.reparameterized and "log_q_at_any_z" in needs.guide


class DisARMLoss(WeightedLoss):
    """The ELBO with the DisARM gradient for the guide (``arm=True``: ARM's); see the module's docstring."""

    # θ by the ELBO's gradient, φ by the antithetic estimator at the pair it draws itself
    needs = replace(WeightedLoss.needs, guide=AT_ANY_Z, reparameterized=False, sums_out=False,
                    splits_roles=True)

    def __init__(self, arm: bool = False, max_plate_nesting: int = 1):
        super().__init__(particles=2, max_plate_nesting=max_plate_nesting)
        self.arm = arm
        self.name = "arm" if arm else "disarm"

    def bound(self, log_w):
        return elbo_bound(log_w)

    def draw(self, model, guide, x, *args, **kwargs) -> Particles:
        if not self.at_once:
            raise Refusal(f"{self.name} draws its antithetic pair of particles at once, in a plate left of the "
                          f"program's, and this program does not broadcast over one", scores_any_latent)
        p = self._pair(model, guide, x, args, kwargs)
        names = [name for name, _ in latent_sites(p.guide_trace)]
        for name, site in latent_sites(p.guide_trace):
            base = bernoulli(site)
            if base is None or name not in p.u:
                raise Refusal(f"{self.name} is an estimator for Bernoulli latents, and the guide's site {name!r} draws "
                              f"from {unwrapped(site).__name__ if base is None else 'Bernoulli outside the pair plate'}",
                              scores_any_latent)
        p.layers = [(None, p)]  # (the site whose α a draw's f estimates the gradient of, all if None; the draw)
        if any(not torch.equal(*logits_of(site).detach().unbind(0)) for _, site in latent_sites(p.guide_trace)):
            # A hierarchical guide: a pair for each layer given one shared draw of the layers above it. This
            # draw serves the first layer: each member's later layers are drawn from q given its own b₁, and
            # their coupling through one u does not change the expectation of f(b) − f(b̃).
            p.layers = [(names[0], p)] + [(name, self._pair(model, guide, x, args, kwargs, only=name,
                                                            shared=names[:at]))
                                          for at, name in enumerate(names) if at > 0]
        return p

    def _pair(self, model, guide, x, args, kwargs, only=None, shared=()) -> Particles:
        with Antithetic(-self.max_plate_nesting - 1, only, shared) as antithetic:
            p = super().draw(model, guide, x, *args, **kwargs)
        p.u = antithetic.u
        return p

    def surrogates(self, p):
        guide_terms = p.log_w.new_zeros(())
        for only, d in p.layers:
            f = d.log_w.detach()  # [2, N]: f(b) and f(b̃) per data point
            for name, site in latent_sites(d.guide_trace):  # each a Bernoulli site of the pair (checked in draw)
                if only is not None and name != only:
                    continue
                logits = logits_of(site)
                b, b_tilde = site["value"][0], site["value"][1]
                # f per data point, broadcast over the site's dimensions right of the data plate
                diff = (f[0] - f[1]).reshape(f.shape[1:] + (1,) * (b.dim() - f[1].dim()))
                if self.arm:
                    g = -diff * (d.u[name][0] - 0.5)
                else:
                    g = 0.5 * diff * (1 - 2 * b_tilde) * (b != b_tilde) * torch.sigmoid(logits[0].detach().abs())
                guide_terms = guide_terms + (g.detach() * logits[0]).sum()
        return [(p.log_p.mean(0).sum(), "model"), (guide_terms, "guide")]


def logits_of(site) -> torch.Tensor:
    """A Bernoulli site's logits at the shape of its value, the pair's dimension first."""
    fn = site["fn"]
    return bernoulli(site).logits.expand(fn.batch_shape + fn.event_shape)


def one_pair(name: str, particles: int) -> None:
    if particles > 2:
        raise UsageError(f"{name} draws one antithetic pair (two particles) per data point, so --particles "
                         f"{particles} would not be what it computes; drop --particles or pass 2.")


def disarm(particles: int = 2) -> Objective:
    """DisARM: the ELBO, its guide gradient by the antithetic pair (Dong, Mnih & Tucker 2020); two draws per point."""
    one_pair("disarm", particles)
    return Objective("disarm", DisARMLoss(), 2, elbo_bound, recordable=True)


def arm(particles: int = 2) -> Objective:
    """ARM: the ELBO, its guide gradient by the augment-REINFORCE-merge pair (Yin & Zhou 2019); two draws per point."""
    one_pair("arm", particles)
    return Objective("arm", DisARMLoss(arm=True), 2, elbo_bound, recordable=True)
