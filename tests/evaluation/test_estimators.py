"""The log p(x) estimators against exact answers: PPCA's closed form and a mixture's exact sum.

Every stochastic check compares the per-point difference estimate − exact with its standard error over
the points (fixed seeds); the guides are deliberately not the exact posterior, so that there is a gap to
close. PPCA runs in float64."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from helpers import small_ppca
from ppl_vae.errors import UsageError
from ppl_vae.evaluation import estimators
from ppl_vae.evaluation.estimators.ais import ais, bdmc, sigmoid_schedule, simulate
from ppl_vae.evaluation.estimators.elbo import elbo
from ppl_vae.evaluation.estimators.importance import importance, log_weight_batches
from ppl_vae.evaluation.estimators.laplace import laplace
from ppl_vae.evaluation.estimators.perturbative import perturbative, perturbative_bound
from ppl_vae.evaluation.estimators.target import Target, latent_space
from ppl_vae.guides.linear import LinearGaussian


def shifted_guide(ppca, shift: float, widen: float) -> LinearGaussian:
    """q(z | x) = N(posterior mean + shift, diag(widen · posterior sd)²): a diagonal Gaussian, not p(z | x)."""
    A, b, cov = ppca.posterior_params()
    g = LinearGaussian(ppca.x_dim, ppca.latent_dim, full_cov=False).double()
    with torch.no_grad():
        g.A.copy_(A)
        g.b.copy_(b + shift)
        g.log_diag.copy_(cov.diagonal().sqrt().log() + math.log(widen))
    return g


def error(result, exact):
    """(mean of estimate − exact over the points, its standard error)."""
    d = result["per_point"] - exact
    return d.mean().item(), d.std().item() / math.sqrt(d.numel())


@pytest.fixture
def ppca_data():
    ppca = small_ppca()
    x = ppca.marginal().sample((50,)).detach()
    return ppca, x, ppca.log_marginal(x).detach()


# -- Laplace -----------------------------------------------------------------------------------

def test_laplace_is_exact_on_ppca(ppca_data):
    ppca, x, exact = ppca_data
    guide = shifted_guide(ppca, 0.4, 1.3)  # Newton starts at q's mean, away from the mode
    for max_elements in (None, 40):  # 40: chunks of 4 points (d = 2 copies × 5 dims each)
        result = laplace(ppca.model, guide.guide, x, tol=1e-8, max_elements=max_elements)
        assert (result["per_point"] - exact).abs().max() < 1e-4
        assert result["n"] == 50 and result["not_positive_definite"] == 0 and result["not_converged"] == 0
        assert result["newton_steps"] == 1  # log p(x, z) is quadratic in z: one Newton step lands on the mode
        assert result["quantity"] == "approximation" and result["seconds"] > 0


def test_laplace_needs_only_the_model_and_ignores_the_closed_form(ppca_data):
    ppca, x, exact = ppca_data

    def point_mass(x, idx=None):  # a guide with no density, at a z far from the mode
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Delta(x.new_full((x.shape[0], 2), 3.0)).to_event(1))

    result = laplace(ppca, point_mass, x, tol=1e-8)  # the module itself: its log_marginal is not used
    assert (result["per_point"] - exact).abs().max() < 1e-4
    with pytest.raises(UsageError, match="point mass"):
        importance(ppca, point_mass, x, particles=2)


def test_laplace_reports_points_whose_hessian_is_not_positive_definite():
    """log p(x, z) = −z²/2 + x z² − z⁴/4 + log N(x; 0, 1): for x > ½, z = 0 (q's mean, where the gradient
    vanishes) is a minimum, H = 1 − 2x < 0; for x < ½ it is the maximum, H > 0, and the value exact."""
    def model(x, idx=None):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))
            pyro.factor("well", x * z ** 2 - z ** 4 / 4)
            pyro.sample("x", dist.Normal(0.0, 1.0), obs=x)

    def guide(x, idx=None):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))

    x = torch.tensor([-1.0, 0.2, 0.9, 0.3, 2.0], dtype=torch.float64)
    result = laplace(model, guide, x)
    assert result["not_positive_definite"] == 2 and result["not_positive_definite_indices"] == [2, 4]
    assert result["n"] == 3 and result["points"] == 5 and result["per_point"][[2, 4]].isnan().all()
    kept = x[[0, 1, 3]]  # mode z* = 0: log p(x, 0) + ½ log 2π − ½ log(1 − 2x), log p(x, 0) = log N(x) − ½ log 2π
    expected = dist.Normal(0.0, 1.0).log_prob(kept) - 0.5 * torch.log(1 - 2 * kept)
    torch.testing.assert_close(result["per_point"][[0, 1, 3]], expected.double())
    assert result["estimate"] == pytest.approx(expected.mean().item())


# -- importance sampling and the ELBO ---------------------------------------------------------------

def test_importance_sampling_converges_to_log_px_and_ignores_the_closed_form(ppca_data):
    ppca, x, exact = ppca_data
    guide = shifted_guide(ppca, 0.4, 1.3)
    errors = {k: error(importance(ppca, guide, x, particles=k), exact) for k in (1, 10, 100, 10_000)}
    (e1, s1), (e10, s10), (e100, s100), (big, se) = errors.values()
    assert e1 < -4 * s1  # the closed form was not taken: K = 1 is well below log p(x)
    assert abs(big) < 4 * se
    assert e1 < e10 < e100 and abs(big) < abs(e10) / 10


def test_elbo_estimates_the_closed_form_elbo(ppca_data):
    ppca, x, _ = ppca_data
    guide = shifted_guide(ppca, 0.4, 1.3)
    q = guide.dist(x)
    exact = ppca.elbo(x, q.mean, torch.diag_embed(q.variance)).detach()
    a, b = elbo(ppca, guide, x, particles=2000), elbo(ppca, guide, x, particles=2000)
    se = (a["per_point"] - b["per_point"]).std().item() / math.sqrt(2 * 50)  # the Monte Carlo error of a's mean
    assert abs(a["estimate"] - exact.mean().item()) < 4 * se
    assert a["quantity"] == "lower bound" and a["particles"] == 2000


# -- the perturbative bound ---------------------------------------------------------------------

@pytest.mark.parametrize("sample", ["normal", "left-skewed", "right-skewed"])
def test_perturbative_bound_math(sample):
    g = torch.Generator().manual_seed(0)
    e = torch.randn(3000, 7, generator=g, dtype=torch.float64)
    log_w = {"normal": 2 * e, "left-skewed": -torch.exp(e), "right-skewed": torch.exp(e)}[sample] - 30
    elbo_, is_ = log_w.mean(0), log_w.logsumexp(0) - math.log(3000)
    bound1, v1 = perturbative_bound(log_w, 1)
    torch.testing.assert_close(bound1, elbo_)  # K = 1 is the ELBO, at V₀ = E[log w]
    torch.testing.assert_close(v1, elbo_)
    bounds = []
    for order in (3, 5, 7):
        bound, v0 = perturbative_bound(log_w, order)
        assert (log_w - v0).pow(order).mean(0).abs().max() < 1e-6 * log_w.var(0).max() ** (order / 2)  # V₀* optimal
        for shift in (-1.0, 0.5):  # and no other reference gives more
            t = log_w - (v0 + shift)
            other = v0 + shift + sum(t.pow(k) / math.factorial(k) for k in range(order + 1)).mean(0).log()
            assert (other.nan_to_num(-math.inf) <= bound + 1e-9).all()
        assert (bound <= is_ + 1e-9).all()  # below importance sampling on the same draws, for any sample
        bounds.append(bound)
    if sample != "left-skewed":
        assert (bounds[0] >= elbo_).all()
    with pytest.raises(UsageError, match="odd order"):
        perturbative_bound(log_w, 2)


def k3_and_its_draws(ppca, guide, x, particles=20_000):
    """The order-3 estimate, and the log weights [S, N] of the draws it came from (the same seed)."""
    pyro.set_rng_seed(1)
    k3 = perturbative(ppca, guide, x, order=3, particles=particles)
    pyro.set_rng_seed(1)
    log_w = torch.cat(list(log_weight_batches(ppca, guide, x, particles)), 1)
    torch.testing.assert_close(k3["per_point"], perturbative_bound(log_w, 3)[0])
    return k3, log_w


@pytest.mark.slow
def test_perturbative_k3_lies_between_elbo_and_log_px_and_tightens_with_the_order(ppca_data):
    ppca, x, exact = ppca_data
    k3, log_w = k3_and_its_draws(ppca, shifted_guide(ppca, 0.4, 1.3), x)
    assert (log_w.mean(0) < k3["per_point"]).all() and (k3["per_point"] < exact).all()  # every point
    gaps = [error({"per_point": perturbative_bound(log_w, order)[0]}, exact) for order in (3, 7, 11, 21)]
    assert all(b[0] > a[0] for a, b in zip(gaps, gaps[1:]))
    assert abs(gaps[-1][0]) < 4 * gaps[-1][1]  # K = 21: log p(x), within 4 standard errors
    assert k3["order"] == 3 and k3["quantity"] == "stochastic lower bound"


def test_perturbative_k3_falls_below_the_elbo_when_q_is_far_too_wide(ppca_data):
    """What the docstring warns: log w with a heavy left tail (q three times the posterior's width)."""
    ppca, x, exact = ppca_data
    k3, log_w = k3_and_its_draws(ppca, shifted_guide(ppca, 0.0, 3.0), x)
    below, se = error(k3, log_w.mean(0))
    assert below < -4 * se and error(k3, exact)[0] < 0  # under the ELBO, and still a lower bound


# -- AIS and BDMC --------------------------------------------------------------------------------

def test_sigmoid_schedule():
    betas = sigmoid_schedule(10)
    assert betas[0] == 0 and betas[-1] == 1 and (betas.diff() > 0).all()
    torch.testing.assert_close(betas + betas.flip(0), torch.ones(11, dtype=torch.float64))
    assert betas[1] < 0.1 / 2  # smaller steps near the ends than the linear schedule's


def test_ais_converges_to_log_px(ppca_data):
    ppca, x, exact = ppca_data
    guide = shifted_guide(ppca, 1.0, 1.5)  # a poor proposal: importance sampling with 4 particles is far off
    one, se_one = error(ais(ppca, guide, x, steps=1, chains=4), exact)  # T = 1: importance sampling, K = 4
    two, se_two = error(ais(ppca, guide, x, steps=2, chains=4), exact)
    result = ais(ppca, guide, x, steps=100, chains=4)
    long, se_long = error(result, exact)
    assert one < two < -4 * se_two and one < -4 * se_one
    assert abs(long) < 4 * se_long and abs(long) < abs(two) / 10
    assert 0.5 < result["acceptance"] <= 1 and result["steps"] == 100 and result["chains"] == 4


@pytest.mark.slow
def test_bdmc_brackets_log_px_and_narrows_with_t():
    ppca = small_ppca()
    guide = shifted_guide(ppca, 1.0, 1.5)
    x_sim, z_sim = simulate(ppca, guide, torch.zeros(40, ppca.x_dim, dtype=torch.float64))
    assert z_sim.shape == (40, 2) and x_sim.dtype == torch.float64
    exact = ppca.log_marginal(x_sim).detach()
    widths = []
    for steps in (2, 100):
        result = bdmc(ppca, guide, x_sim, z_sim, steps=steps, chains=4)
        lower, lower_se = error(result, exact)
        upper = result["per_point_upper"] - exact
        assert lower < 4 * lower_se and upper.mean() > -4 * upper.std() / math.sqrt(40)
        widths.append((result["gap"], result["gap_se"]))
    (wide, wide_se), (narrow, narrow_se) = widths
    assert narrow < wide - 4 * math.hypot(wide_se, narrow_se) and narrow > -4 * narrow_se


def test_a_guide_of_two_dependent_sites(ppca_data):
    """PPCA with z split into sites z1, z2 and a guide q(z1 | x) q(z2 | z1, x): latents flattened in the guide's
    order, log q at any z by rerunning the guide conditioned on it, the mean taken site by site."""
    ppca, x, exact = ppca_data
    A, b, cov = (t.detach() for t in ppca.posterior_params())

    def model(x, idx=None):
        with pyro.plate("data", x.shape[0]):
            z1 = pyro.sample("z1", dist.Normal(x.new_zeros(()), 1.0))
            z2 = pyro.sample("z2", dist.Normal(x.new_zeros(()), 1.0))
            mean = z1.unsqueeze(-1) * ppca.W[:, 0] + z2.unsqueeze(-1) * ppca.W[:, 1] + ppca.mu
            pyro.sample("x", dist.Normal(mean, ppca.sigma).to_event(1), obs=x)

    def guide(x, idx=None):
        m = x @ A.T + b
        with pyro.plate("data", x.shape[0]):
            z1 = pyro.sample("z1", dist.Normal(m[:, 0] + 0.3, 1.3 * cov[0, 0].sqrt()))
            pyro.sample("z2", dist.Normal(m[:, 1] + 0.5 * (z1 - m[:, 0]), 1.3 * cov[1, 1].sqrt()))

    target = Target(model, guide, latent_space(model, guide, x, estimator="ais", needs=estimators.NEEDS["ais"]), x)
    z = torch.randn(3, 50, 2, dtype=torch.float64)
    m = x @ A.T + b
    by_hand = (dist.Normal(m[:, 0] + 0.3, 1.3 * cov[0, 0].sqrt()).log_prob(z[..., 0])
               + dist.Normal(m[:, 1] + 0.5 * (z[..., 0] - m[:, 0]), 1.3 * cov[1, 1].sqrt()).log_prob(z[..., 1]))
    torch.testing.assert_close(target.log_q(z), by_hand)
    torch.testing.assert_close(target.guide_mean(), m + torch.tensor([0.3, 0.15], dtype=torch.float64))
    assert (laplace(model, guide, x, tol=1e-8)["per_point"] - exact).abs().max() < 1e-4
    e, se = error(ais(model, guide, x, steps=50, chains=4), exact)
    assert abs(e) < 4 * se


# -- a mixture whose assignment is enumerated: every estimator against the exact sum -----------------

def mixture(ppca, separation: float):
    """y ~ Categorical(½, ½) summed out by enumeration, z ~ N(0, I), x | y, z ~ N(W z + μ + y·s·1, σ² I); the
    guide is the Gaussian with the exact posterior's mean and (widened) covariance, a mixture moment-matched."""
    shift = torch.stack([torch.zeros(ppca.x_dim), separation * torch.ones(ppca.x_dim)]).double()
    A, b, cov = ppca.posterior_params()
    A, b, cov = A.detach(), b.detach(), cov.detach()
    C = ppca.marginal().covariance_matrix.detach()

    def exact(x):
        return torch.stack([dist.MultivariateNormal(ppca.mu.detach() + s, C).log_prob(x) for s in shift], -1
                           ).logsumexp(-1) - math.log(2)

    @pyro.infer.config_enumerate
    def model(x, idx=None):
        with pyro.plate("data", x.shape[0]):
            y = pyro.sample("y", dist.Categorical(logits=x.new_zeros(2)))
            z = pyro.sample("z", dist.Normal(x.new_zeros(ppca.latent_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ ppca.W.T + ppca.mu + shift[y], ppca.sigma).to_event(1), obs=x)

    def guide(x, idx=None):
        r = torch.stack([dist.MultivariateNormal(ppca.mu.detach() + s, C).log_prob(x) for s in shift], -1).softmax(-1)
        means = torch.stack([(x - s) @ A.T + b for s in shift], -2)  # [N, 2, q]
        m = (r.unsqueeze(-1) * means).sum(-2)
        spread = (r[..., None, None] * (means - m.unsqueeze(-2)).unsqueeze(-1) * (means - m.unsqueeze(-2)).unsqueeze(-2))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.MultivariateNormal(m, 1.2 ** 2 * (cov + spread.sum(-3))))

    return model, guide, exact


def test_every_estimator_against_the_exact_sum_of_a_mixture():
    ppca = small_ppca()
    model, guide, exact_fn = mixture(ppca, separation=1.5)
    g = torch.Generator().manual_seed(3)
    y = torch.randint(0, 2, (40,), generator=g)
    x = ppca.marginal().sample((40,)).detach() + 1.5 * y[:, None].double()
    exact = exact_fn(x)
    lower, lower_se = error(elbo(model, guide, x, particles=1000), exact)
    assert lower < -4 * lower_se  # q is not the (bimodal) posterior: the ELBO is strictly below
    for result in (importance(model, guide, x, particles=5000), ais(model, guide, x, steps=50, chains=4)):
        e, se = error(result, exact)
        assert abs(e) < 4 * se, result["estimator"]
    e3, se3 = error(perturbative(model, guide, x, order=3, particles=5000), exact)
    assert lower < e3 < 4 * se3


def test_laplace_against_the_exact_sum_of_a_well_separated_mixture():
    """With components 10 σ apart each posterior is one Gaussian to within e^-30, so Laplace is exact."""
    ppca = small_ppca()
    model, guide, exact_fn = mixture(ppca, separation=10.0)
    y = torch.tensor([0, 1] * 10)
    x = ppca.marginal().sample((20,)).detach() + 10.0 * y[:, None].double()
    result = laplace(model, guide, x, tol=1e-8)
    assert (result["per_point"] - exact_fn(x)).abs().max() < 1e-4


# -- refusals: one sentence each, before any work ---------------------------------------------------

def one_sentence(message: str) -> bool:
    return "\n" not in message and message.endswith(".") and ". " not in message


def discrete_guide_pair(ppca):
    def model(x, idx=None):
        with pyro.plate("data", x.shape[0]):
            y = pyro.sample("y", dist.Bernoulli(0.5))
            z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ ppca.W.T + ppca.mu + y[:, None], ppca.sigma).to_event(1), obs=x)

    def guide(x, idx=None):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Bernoulli(x.new_full((x.shape[0],), 0.5)))
            pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], 2), 1.0).to_event(1))

    return model, guide


def global_latent_pair(ppca):
    def model(x, idx=None):
        mu = pyro.sample("mu", dist.Normal(x.new_zeros(ppca.x_dim), 1.0).to_event(1))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ ppca.W.T + mu, ppca.sigma).to_event(1), obs=x)

    def guide(x, idx=None):
        pyro.sample("mu", dist.Normal(x.new_zeros(ppca.x_dim), 0.1).to_event(1))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], 2), 1.0).to_event(1))

    return model, guide


def positive_guide_pair(ppca):
    def guide(x, idx=None):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.LogNormal(x.new_zeros(x.shape[0], 2), 1.0).to_event(1))

    return ppca.model, guide


def flow_guide_pair(ppca):
    from ppl_vae.guides.flows import FlowGaussian

    flow = FlowGaussian(torch.nn.Linear(ppca.x_dim, 8), 8, 2, "planar", 1).double()
    return ppca.model, flow.guide


def unguided_latent_pair(ppca):
    def model(x, idx=None):
        with pyro.plate("data", x.shape[0]):
            u = pyro.sample("u", dist.Normal(x.new_zeros(()), 1.0))
            z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ ppca.W.T + ppca.mu + u[:, None], ppca.sigma).to_event(1), obs=x)

    return model, positive_guide_pair(ppca)[1]


def no_latent_pair(ppca):
    from ppl_vae.models.gmm import GMM

    gmm = GMM(ppca.x_dim, 2).double()
    return gmm, lambda x, idx=None: None


@pytest.mark.parametrize("make, names, words", [
    (discrete_guide_pair, ["laplace", "ais"], "guide site 'y' is discrete"),
    (global_latent_pair, ["elbo", "is", "laplace", "perturbative", "ais"], "site 'mu' lies outside pyro.plate('data')"),
    (positive_guide_pair, ["laplace", "ais"], "guide site 'z' is constrained"),
    (flow_guide_pair, ["ais"], "normalizing flow"),
    (unguided_latent_pair, ["elbo", "is", "laplace", "perturbative", "ais"], "latent site 'u', which the guide does not"),
    (no_latent_pair, ["elbo", "is", "laplace", "perturbative", "ais"], "the guide samples no latent site"),
])
def test_refusals_are_one_sentence(make, names, words):
    ppca = small_ppca()
    model, guide = make(ppca)
    x = ppca.marginal().sample((3,)).detach()
    for name in names:
        with pytest.raises(UsageError) as refused:
            estimators.ESTIMATORS[name](model, guide, x)
        assert words in str(refused.value) and one_sentence(str(refused.value)), str(refused.value)
        with pytest.raises(UsageError):
            estimators.check([name], model, guide, x)


def test_what_is_not_refused():
    """A discrete guide site is fine where q is only sampled; a flow where it is scored at its own samples."""
    ppca = small_ppca()
    x = ppca.marginal().sample((3,)).detach()
    for make, names in ((discrete_guide_pair, ["elbo", "is", "perturbative"]),
                        (flow_guide_pair, ["elbo", "is", "perturbative", "laplace"])):
        model, guide = make(ppca)
        for name in names:
            latent_space(model, guide, x, estimator=name, needs=estimators.NEEDS[name])
    model, guide = flow_guide_pair(ppca)
    assert torch.isfinite(importance(model, guide, x, particles=3)["per_point"]).all()
    assert torch.isfinite(laplace(model, guide, x)["per_point"]).all()  # started at one draw: no closed-form mean
