"""Each guide's density against an independent computation, and every built-in guide trains."""

import dataclasses
import math

import pyro
import pytest
import torch

import helpers

from torch.autograd.functional import jacobian
from torch.distributions import MultivariateNormal, kl_divergence

from ppl_vae.guides.delta import DeltaEncoder
from ppl_vae.guides.flows import FlowGaussian
from ppl_vae.guides.full_cov import FullCovGaussian
from ppl_vae.models.mlp import encoder_body
from ppl_vae.models.vae import VAE
from ppl_vae.inference import objectives
from ppl_vae.inference.objectives import OBJECTIVES
from ppl_vae import fit, registry
from ppl_vae.errors import UsageError
from ppl_vae.inference.weights import log_weights


def body(x_dim=5):
    return encoder_body(x_dim, (16,), "tanh")


# Densities are compared in float64: float32's rounding of a log-determinant and a quadratic form
# (~1e-7 relative, times terms of order 10) differs between CPU kernels by more than
# assert_close's float32 default of 1e-5.


def test_full_cov_density_is_the_multivariate_normal_of_L_Lt():
    torch.manual_seed(0)
    guide = FullCovGaussian(*body(), latent_dim=4).double()
    x = torch.randn(6, 5, dtype=torch.float64)
    loc, L = guide(x)
    assert torch.equal(L, torch.diag_embed(L.diagonal(dim1=-2, dim2=-1)))  # it starts diagonal
    torch.nn.init.normal_(guide.lower.weight)
    loc, L = guide(x)
    assert torch.equal(L.triu(1), torch.zeros_like(L))  # lower-triangular
    assert (L.diagonal(dim1=-2, dim2=-1) > 0).all()
    assert L.tril(-1).abs().sum() > 0  # the off-diagonal part is used
    z = guide.dist(x).rsample()
    reference = MultivariateNormal(loc, covariance_matrix=L @ L.transpose(-1, -2))
    torch.testing.assert_close(guide.dist(x).log_prob(z), reference.log_prob(z))
    # z = μ + L ε, so log |det ∂z/∂ε| = Σ log σ: the diagonal of L
    J = jacobian(lambda eps: loc[0] + L[0] @ eps, torch.zeros(4, dtype=torch.float64))
    torch.testing.assert_close(torch.linalg.slogdet(J)[1], L[0].diagonal().log().sum())


def test_full_cov_analytic_kl_to_the_standard_normal():
    torch.manual_seed(1)
    q = FullCovGaussian(*body(), latent_dim=3).double().dist(torch.randn(4, 5, dtype=torch.float64))
    prior = pyro.distributions.Normal(torch.zeros(3, dtype=torch.float64), 2.0).to_event(1)
    reference = kl_divergence(MultivariateNormal(q.loc, scale_tril=q.scale_tril),
                              MultivariateNormal(torch.zeros(3, dtype=torch.float64),
                                                 4.0 * torch.eye(3, dtype=torch.float64)))
    torch.testing.assert_close(kl_divergence(q, prior), reference)


@pytest.mark.parametrize("flow", ["planar", "iaf", "realnvp"])
def test_flow_log_density_uses_the_log_det_of_the_autograd_jacobian(flow):
    torch.manual_seed(2)
    guide = FlowGaussian(*body(), latent_dim=3, flow=flow, depth=3).double()
    for p in guide.parameters():  # move away from the near-identity initialization
        p.data.add_(0.3 * torch.randn_like(p))
    x = torch.randn(2, 5, dtype=torch.float64)
    h = guide.body(x)
    q = guide.dist(x)
    z0 = q.base_dist.sample()
    z = z0
    for t in q.transforms:
        z = t(z)
    for n in range(2):
        def f(v, n=n):
            out = v
            for t in guide.transforms(h[n]):
                out = t(out)
            return out
        J = jacobian(f, z0[n])
        expected = q.base_dist.log_prob(z0)[n] - torch.linalg.slogdet(J)[1]
        torch.testing.assert_close(q.log_prob(z)[n], expected)
    assert abs(torch.linalg.slogdet(J)[1]) > 1e-2  # a map that is not volume-preserving


def test_flow_guides_broadcast_over_vectorized_particles():
    for flow in ("planar", "iaf", "realnvp"):
        guide, vae = FlowGaussian(*body(64), latent_dim=3, flow=flow), VAE(64, 3, (8,))
        lw = log_weights(vae.model, guide.guide, torch.bernoulli(torch.full((6, 64), 0.4)), particles=4)
        assert lw.shape == (4, 6) and lw.isfinite().all()


def test_delta_guide_weight_is_reconstruction_plus_log_prior():
    torch.manual_seed(3)
    guide, vae = DeltaEncoder(*body(64), latent_dim=3).double(), VAE(64, 3, (8,)).double()
    x = torch.bernoulli(torch.full((5, 64), 0.4, dtype=torch.float64))
    z = guide(x)
    expected = vae.likelihood_dist(z).log_prob(x) + vae.prior(x).log_prob(z)
    lw = log_weights(vae.model, guide.guide, x, particles=3)
    torch.testing.assert_close(lw, expected.expand(3, 5))


def config(**kw):
    return helpers.config(hidden=[32], latent_dim=4, **kw)


@pytest.mark.parametrize("guide", ["gaussian", "full-cov", "planar", "iaf", "realnvp", "delta", "local", "two-layer",
                                   "two-layer-mf"])
@pytest.mark.slow
def test_every_builtin_guide_trains_with_the_elbo(digits, guide):
    model = "two-layer" if guide.startswith("two-layer") else "vae"
    conf = config(guide=guide, model=model)
    pyro.set_rng_seed(0)
    vae, q = registry.build(conf, digits)
    data = dataclasses.replace(digits, x_test=digits.x_test[:60])  # the local guide refits q per test point
    history = fit(vae, q, data, epochs=3, lr=3e-3, progress=False)
    bounds = [m["test_bound"] for m in history]
    assert all(math.isfinite(b) for b in bounds)
    assert bounds[-1] > bounds[0] + 1.0, bounds


def test_compatibility_table_gives_one_sentence():
    invalid = [(g, o) for g, factory in registry.GUIDES.items() for o in OBJECTIVES
               if objectives.declared(o).needs.guide & registry.declared(factory).lacks.keys()]
    assert all(what in objectives.GUIDE_CAPABILITIES for f in registry.GUIDES.values()
               for what in registry.declared(f).lacks)
    assert ("delta", "iwae") in invalid and ("planar", "stl") in invalid and ("two-layer", "elbo-analytic") in invalid
    assert ("bernoulli2", "elbo-analytic") in invalid
    for guide, objective in invalid:
        model = {"two-layer": "two-layer", "two-layer-mf": "two-layer", "bernoulli2": "sbn2"}.get(guide, "vae")
        with pytest.raises(UsageError) as e:
            registry.check(config(guide=guide, model=model, objective=objective))
        message = str(e.value)
        assert message.count(". ") == 0 and message.endswith(".") and f"--objective {objective}" in message
    vae_guides = [g for g in registry.GUIDES
                  if g not in ("linear", "empty", "bernoulli", "bernoulli2", "categorical", "rnn", "draw", "air")]
    for guide in vae_guides:  # the others have their own models; every objective is allowed but those refused and fivo
        model = "two-layer" if guide.startswith("two-layer") else "vae"
        for objective in [o for o in OBJECTIVES if o not in ("enum", "fivo")]:
            if (guide, objective) not in invalid:
                registry.check(config(guide=guide, model=model, objective=objective))
    with pytest.raises(UsageError, match="--guide two-layer"):
        registry.check(config(model="two-layer", guide="iaf"))


@pytest.mark.parametrize("guide, depends", [("two-layer", True), ("two-layer-mf", False)])
def test_the_two_layer_guides_structure(digits, guide, depends):
    """Structured: q(z2 | z1) moves with z1; fully factorised: q(z2 | x) does not, and it trains with the
    analytic KL, which the structured guide refuses."""
    from pyro import poutine

    pyro.set_rng_seed(0)
    _, q = registry.build(config(guide=guide, model="two-layer"), digits)
    x = digits.x_test[:5]
    locs = [poutine.trace(poutine.condition(q.guide, data={"z1": torch.full((5, q.q1.latent_dim), v)}))
            .get_trace(x).nodes["z2"]["fn"].base_dist.loc for v in (0.0, 1.0)]
    assert torch.equal(*locs) is not depends
    if not depends:
        vae, q = registry.build(config(guide=guide, model="two-layer", objective="elbo-analytic"), digits)
        history = fit(vae, q, digits, "elbo-analytic", epochs=3, lr=3e-3, progress=False)
        assert history[-1]["test_bound"] > history[0]["test_bound"] + 1.0
