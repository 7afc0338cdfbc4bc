"""The auxiliary-variable guide: its density, the augmented model's bound, the objectives it trains with,
and a correlated posterior it can express where a diagonal Gaussian cannot."""

import math

import pytest
import torch
import torch.nn.functional as F
from pyro import poutine
from torch.autograd.functional import jacobian

from ppl_vae import fit, registry
from ppl_vae.errors import UsageError
from ppl_vae.evaluation import latents
from ppl_vae.evaluation.evaluate import mean_and_se, per_point
from ppl_vae.guides.auxiliary import AuxiliaryGaussian, Reverse, ReverseModel
from ppl_vae.guides.gaussian import DiagonalGaussian
from ppl_vae.inference import objectives
from ppl_vae.inference.weights import log_weights
from ppl_vae.models.mlp import encoder_body
from ppl_vae.models.vae import VAE
import helpers


def perturbed(module):
    for p in module.parameters():  # away from the initialization, so that every term matters
        p.data.add_(0.3 * torch.randn_like(p))
    return module


def pair(x_dim=5, latent_dim=3):
    torch.manual_seed(0)
    guide = perturbed(AuxiliaryGaussian(*encoder_body(x_dim, (16,), "tanh"), latent_dim, "tanh").double())
    model = ReverseModel(VAE(x_dim, latent_dim, (16,), "tanh").double(),
                         Reverse(*encoder_body(x_dim, (16,), "tanh"), latent_dim, latent_dim, "tanh").double())
    return perturbed(model), guide


def test_log_q_of_a_and_z_is_the_change_of_variables_of_its_noise():
    """The guide's log q(a, z | x) at its own draws equals log N(ε; 0, I) − log |det ∂(a, z)/∂ε| for the
    map from the standard-normal noise ε = (ε_a, ε_z) to (a, z), with the Jacobian by autograd."""
    torch.manual_seed(0)
    guide = perturbed(AuxiliaryGaussian(*encoder_body(5, (16,), "tanh"), 3, "tanh", aux_dim=2).double())
    x = torch.randn(4, 5, dtype=torch.float64)
    trace = poutine.trace(guide.guide).get_trace(x)
    trace.compute_log_prob()
    log_q = trace.nodes["a"]["log_prob"] + trace.nodes["z"]["log_prob"]
    h = guide.body(x)
    for n in range(4):
        def sample(eps):  # ε [5] -> (a, z) [5], by the guide's own networks
            loc_a, scale_a = guide.q_a(h[n]).base_dist.loc, guide.q_a(h[n]).base_dist.scale
            a = loc_a + scale_a * eps[:2]
            q_z = guide.q_z(h[n:n + 1], a[None]).base_dist
            return torch.cat([a, (q_z.loc + q_z.scale * eps[2:])[0]])

        a, z = trace.nodes["a"]["value"][n], trace.nodes["z"]["value"][n]
        qa = guide.q_a(h[n]).base_dist
        eps_a = (a - qa.loc) / qa.scale
        qz = guide.q_z(h[n:n + 1], a[None]).base_dist
        eps = torch.cat([eps_a, ((z - qz.loc) / qz.scale)[0]])
        torch.testing.assert_close(sample(eps), torch.cat([a, z]))
        expected = torch.distributions.Normal(0.0, 1.0).log_prob(eps).sum() - torch.linalg.slogdet(jacobian(sample, eps))[1]
        torch.testing.assert_close(log_q[n], expected)


def test_the_bound_is_log_p_x_z_plus_log_r_less_log_q_by_hand():
    """log w of the augmented model against the guide, for K particles: the VAE's Bernoulli log-likelihood
    and N(0, I) prior, plus log r(a | z, x), less log q(a | x) and log q(z | a, x), written in torch."""
    model, guide = pair()
    x = torch.bernoulli(torch.full((6, 5), 0.4, dtype=torch.float64))
    torch.manual_seed(1)
    tape = {}

    def recorded(x):
        with poutine.trace() as t:
            guide.guide(x)
        tape["trace"] = t.trace

    log_w = log_weights(model.model, recorded, x, particles=4)
    a, z = tape["trace"].nodes["a"]["value"], tape["trace"].nodes["z"]["value"]  # [4, 6, 3]
    normal = torch.distributions.Normal
    h = guide.body(x)
    qa, qz = guide.q_a(h).base_dist, guide.q_z(h, a).base_dist
    r = model.reverse.head.net(torch.cat([model.reverse.body(x).expand(4, 6, 16), z], -1))
    r_loc, r_scale = r.chunk(2, -1)
    expected = (-F.binary_cross_entropy_with_logits(model.base.decoder(z), x.expand(4, 6, 5), reduction="none").sum(-1)
                + normal(0.0, 1.0).log_prob(z).sum(-1)
                + normal(r_loc, F.softplus(r_scale) + 1e-5).log_prob(a).sum(-1)
                - normal(qa.loc, qa.scale).log_prob(a).sum(-1) - normal(qz.loc, qz.scale).log_prob(z).sum(-1))
    torch.testing.assert_close(log_w, expected)


@pytest.mark.parametrize("objective", ["iwae", "rws", "stl", "dreg", "score"])
def test_it_trains_with_every_objective_that_applies(digits, objective):
    conf = helpers.config(hidden=[32], latent_dim=4, guide="auxiliary", objective=objective, particles=5)
    registry.check(conf)
    model, guide = registry.build(conf, digits)
    assert isinstance(model, ReverseModel)
    history = fit(model, guide, digits, objectives.make(objective, particles=5), epochs=3, lr=3e-3, progress=False)
    bounds = [m["test_bound"] for m in history]
    assert all(math.isfinite(b) for b in bounds) and bounds[-1] > bounds[0] + 1.0, bounds


def test_it_refuses_the_analytic_kl_and_mmd_and_a_model_with_other_latents():
    for objective in ("elbo-analytic", "mmd"):
        with pytest.raises(UsageError, match=f"--guide auxiliary cannot train with --objective {objective}"):
            registry.check(helpers.config(guide="auxiliary", objective=objective))
    with pytest.raises(UsageError, match="--guide auxiliary samples z but --model two-layer"):
        registry.check(helpers.config(model="two-layer", guide="auxiliary"))


def test_figures_draw_from_its_marginal_and_a_kl_it_cannot_know_is_not_printed(digits):
    model, guide = registry.build(helpers.config(hidden=[32], latent_dim=4, guide="auxiliary"), digits)
    x = digits.x_test[:50]
    torch.manual_seed(0)
    means = latents.posterior_means(guide, x, samples=4000)
    h = guide.body(x)
    a = guide.q_a(h).sample((4000,))
    torch.testing.assert_close(means, guide.q_z(h, a).base_dist.loc.mean(0), atol=0.05, rtol=0)  # E_a[μ_z(h, a)]
    summary = latents.summary(model, guide, x)
    assert summary["kl_mean"] is None and summary["kl_per_dim"] is None
    with pytest.raises(UsageError, match="no closed-form density"):
        latents.kl_per_point(model, guide, x)


@pytest.mark.slow
def test_on_a_correlated_ppca_posterior_it_beats_the_diagonal_guides_floor():
    """PPCA with nearly parallel columns of W (the Real NVP test's model): p(z | x) has correlation −0.83,
    so a diagonal q's gap log p(x) − ELBO stays ≥ −½ log(1 − ρ²) = 0.59 nats. The auxiliary guide's
    q(z | x) = ∫ q(a | x) q(z | a, x) da can be correlated; its bound adds E KL(q(a | z, x) ‖ r(a | z, x)).
    Both train with the ELBO on the model held fixed (r trains: it is the bound's, not the model's), the
    diagonal 40 epochs at lr 1e-2 (its floor holds at any length), the auxiliary 60 at 5e-3; the gaps
    are the exact log p(x) less the ELBO from 1000 particles, per test point. And the augmented model's
    evidence is p(x): log p̂_K from K = 5000 of its weights matches the exact log p(x)."""
    data, ppca = helpers.correlated_ppca()
    exact = ppca.log_marginal(data.x_test).detach()
    torch.manual_seed(0)
    aux = AuxiliaryGaussian(*encoder_body(64, (64,), "tanh"), 2, "tanh")
    augmented = ReverseModel(ppca, Reverse(*encoder_body(64, (64,), "tanh"), 2, 2, "tanh"))
    frozen = poutine.block(augmented.model, hide=[f"ppca$$${name}" for name, _ in ppca.named_parameters()])
    fit(frozen, aux.guide, data, epochs=60, lr=5e-3, progress=False)
    torch.manual_seed(0)
    diag = DiagonalGaussian(64, latent_dim=2, hidden=(64,), activation="tanh")
    fit(poutine.block(ppca.model, hide_types=["param"]), diag.guide, data, epochs=40, lr=1e-2, progress=False)
    gaps = {}
    for name, (model, guide) in {"auxiliary": (augmented, aux), "diagonal": (ppca, diag)}.items():
        elbo, log_px = per_point(model.model, guide.guide, data.x_test, 1000)
        gaps[name] = mean_and_se(exact - elbo.detach())
    (aux_gap, aux_se), (diag_gap, diag_se) = gaps["auxiliary"], gaps["diagonal"]
    assert diag_gap > 0.59 - 4 * diag_se
    assert 0 < aux_gap < 0.5 * diag_gap and diag_gap - aux_gap > 4 * math.hypot(aux_se, diag_se), gaps
    _, log_px = per_point(augmented.model, aux.guide, data.x_test, 5000)
    error, error_se = mean_and_se(exact - log_px.detach())
    assert abs(error) < 4 * error_se + 0.01, (error, error_se)


def test_a_run_trains_resumes_evaluates_and_reports_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "aux"
    common = ["--epochs", "2", "--no-progress"]
    code, _, err = helpers.run_cli(["train", "--out", out, "--guide", "auxiliary", "--hidden", "32", "--latent-dim", "2",
                                    *common], capsys)
    assert code == 0, err
    code, _, err = helpers.run_cli(["train", "--resume", out, "--epochs", "3", "--no-progress"], capsys)
    assert code == 0, err
    code, printed, err = helpers.run_cli(["evaluate", out, "--particles", "50"], capsys)
    assert code == 0 and "NLL" in printed, err
    code, _, err = helpers.run_cli(["report", out], capsys)
    assert code == 0, err
    report = (out / "report.md").read_text()
    assert "mean KL(q(z \\| x) ‖ p(z)) | – |" in report
