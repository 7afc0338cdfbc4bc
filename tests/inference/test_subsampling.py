"""A model written with Pyro's mini-batch idiom, pyro.plate("data", N, subsample=idx): every
objective estimates the full-data objective, and every reported bound is per data point.

The reference is the same PPCA pair without subsampling, whose weights are those of the closed form."""

import math

import pyro
import pyro.distributions as dist
from pyro import poutine
import pytest
import torch

from helpers import exact_guide, small_ppca
from ppl_vae import Dataset, fit
from ppl_vae.inference import objectives
from ppl_vae.inference.weights import log_weights

N = 40  # training points


def pair(ppca, guide, subsample: bool):
    """The PPCA model and a guide as a user writes them, with or without the subsampled plate."""
    def plate(x, idx):
        if subsample:
            return pyro.plate("data", N if idx is not None else x.shape[0], subsample=idx)
        return pyro.plate("data", x.shape[0])

    def model(x, idx=None):
        pyro.module("ppca", ppca)
        with plate(x, idx):
            z = pyro.sample("z", dist.Normal(x.new_zeros(ppca.latent_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ ppca.W.T + ppca.mu, ppca.sigma).to_event(1), obs=x)

    def q(x, idx=None):
        pyro.module("q", guide)
        with plate(x, idx):
            pyro.sample("z", guide.dist(x))

    return model, q


def setup():
    ppca = small_ppca()
    guide = exact_guide(ppca)
    guide.log_diag.data += 0.3  # not the exact posterior, so that the weights vary
    x = ppca.marginal().sample((N,)).detach()
    return ppca, guide, x


def test_log_weights_are_per_point_whatever_the_subsampling_scale():
    ppca, guide, x = setup()
    idx = torch.tensor([3, 17, 21, 30])
    pyro.set_rng_seed(1)
    plain = log_weights(*pair(ppca, guide, False), x[idx], idx, particles=5)
    pyro.set_rng_seed(1)
    scaled = log_weights(*pair(ppca, guide, True), x[idx], idx, particles=5)
    torch.testing.assert_close(scaled, plain, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["iwae", "renyi", "rws", "dreg", "stl", "elbo"])
def test_losses_and_gradients_are_the_full_data_estimate(name):
    """Loss and gradient are N/B times the batch's per-point sum: the scale outside the log-sum-exp."""
    ppca, guide, x = setup()
    idx = torch.arange(8, 12)
    results = []
    for subsample in (False, True):
        objective = objectives.make(name, particles=5)
        model, q = pair(ppca, guide, subsample)
        pyro.clear_param_store()
        pyro.set_rng_seed(2)
        loss = objective.loss.loss_and_grads(model, q, x[idx], idx)
        grads = [p.grad.clone() for p in (*ppca.parameters(), *guide.parameters())]
        for p in (*ppca.parameters(), *guide.parameters()):
            p.grad = None
        results.append((loss, grads))
    (plain_loss, plain_grads), (loss, grads) = results
    factor = N / idx.numel()
    assert loss == pytest.approx(factor * plain_loss, rel=1e-10)
    for g, g0 in zip(grads, plain_grads):
        torch.testing.assert_close(g, factor * g0, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["elbo", "iwae"])
def test_the_trainer_reports_the_bound_per_data_point(name):
    """Before: N/B times too large (elbo), and the IWAE weights raised to the power N/B."""
    ppca, guide, x = setup()
    ppca, guide = ppca.float(), guide.float()
    start = ({k: v.clone() for k, v in ppca.state_dict().items()}, {k: v.clone() for k, v in guide.state_dict().items()})
    histories = []
    for subsample in (False, True):
        ppca.load_state_dict(start[0])
        guide.load_state_dict(start[1])
        histories.append(fit(*pair(ppca, guide, subsample), Dataset.from_tensors(x), name, particles=5, epochs=2,
                             batch_size=10, lr=1e-3, progress=False, device="cpu"))
    plain, scaled = histories
    assert plain[0]["train_bound"] < 0  # a log-likelihood per point of 5-D data, not N/B times one
    # Adam is invariant to the gradient's scale N/B up to its ε, so both runs take the same path
    for a, b in zip(plain, scaled):
        assert b["train_bound"] == pytest.approx(a["train_bound"], abs=1e-4), (a, b)


# -- programs an objective cannot give per-point bounds for: refused before the first step ------

def global_latent_pair(ppca, guide):
    """Bayesian PPCA's mean: μ ~ N(0, I) outside the data plate, a global latent."""
    def model(x, idx=None):
        pyro.module("ppca", ppca)
        mu = pyro.sample("mu", dist.Normal(x.new_zeros(ppca.x_dim), 1.0).to_event(1))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(ppca.latent_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ ppca.W.T + mu, ppca.sigma).to_event(1), obs=x)

    def q(x, idx=None):
        pyro.module("q", guide)
        loc = pyro.param("mu_loc", x.new_zeros(ppca.x_dim))
        pyro.sample("mu", dist.Normal(loc, 0.1).to_event(1))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", guide.dist(x))

    return model, q


def unplated_pair(ppca, guide):
    """The whole batch as one event: no plate says which dimension holds the data points."""
    def model(x, idx=None):
        pyro.module("ppca", ppca)
        z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], ppca.latent_dim), 1.0).to_event(2))
        pyro.sample("x", dist.Normal(z @ ppca.W.T + ppca.mu, ppca.sigma).to_event(2), obs=x)

    def q(x, idx=None):
        pyro.module("q", guide)
        pyro.sample("z", guide.dist(x).to_event(1))

    return model, q


def enumerated_pair(ppca, guide):
    """A two-component mixture of PPCA means, its assignment y enumerated in the model only."""
    from pyro.infer import config_enumerate

    @config_enumerate
    def model(x, idx=None):
        pyro.module("ppca", ppca)
        with pyro.plate("data", x.shape[0]):
            y = pyro.sample("y", dist.Categorical(logits=x.new_zeros(2)))
            z = pyro.sample("z", dist.Normal(x.new_zeros(ppca.latent_dim), 1.0).to_event(1))
            shift = torch.stack([x.new_zeros(ppca.x_dim), x.new_ones(ppca.x_dim)])[y]
            pyro.sample("x", dist.Normal(z @ ppca.W.T + ppca.mu + shift, ppca.sigma).to_event(1), obs=x)

    def q(x, idx=None):
        pyro.module("q", guide)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", guide.dist(x))

    return model, q


@pytest.mark.parametrize("make, objective, words", [
    (global_latent_pair, "elbo", "latent site 'mu' lies outside pyro.plate('data')"),
    (global_latent_pair, "iwae", "latent site 'mu' lies outside pyro.plate('data')"),
    (unplated_pair, "elbo", "the model observes nothing inside a plate"),
    (enumerated_pair, "elbo-analytic", "model site 'y' is marked for enumeration, which the elbo-analytic objective"),
    (enumerated_pair, "score", "model site 'y' is marked for enumeration"),
])
def test_programs_without_per_point_bounds_are_refused_before_training(make, objective, words):
    from ppl_vae.errors import UsageError

    ppca, guide, x = setup()
    ppca, guide = ppca.float(), guide.float()
    before = {k: v.clone() for k, v in ppca.state_dict().items()}
    with pytest.raises(UsageError, match=words.replace("(", r"\(").replace(")", r"\)")):
        fit(*make(ppca, guide), Dataset.from_tensors(x), objective, epochs=1, batch_size=N // 2, progress=False,
            device="cpu")
    assert all(torch.equal(v, ppca.state_dict()[k]) for k, v in before.items())  # no step was taken


def test_a_global_latent_trains_without_subsampling_when_every_step_sees_the_whole_data_set():
    """sparse_gamma_def.py's protocol: pyro.plate('data', x.shape[0]) is the data set's size when the batch is."""
    ppca, guide, x = setup()
    history = fit(*global_latent_pair(ppca.float(), guide.float()), Dataset.from_tensors(x, x), "elbo", epochs=1,
                  batch_size=N, progress=False, device="cpu")
    assert history[-1]["test_bound_given"] == ["mu"]


def test_an_enumerated_site_is_summed_out_by_the_importance_weighted_objectives():
    """log w with y enumerated equals log Σ_y p(x, z, y) − log q(z), computed by hand."""
    ppca, guide, x = setup()
    model, q = enumerated_pair(ppca, guide)
    pyro.set_rng_seed(3)
    lw = log_weights(model, q, x[:6], particles=4)
    pyro.set_rng_seed(3)
    z = guide.dist(x[:6]).sample((4,))  # the same draws: the guide samples first, from the same stream
    shifts = torch.stack([torch.zeros(ppca.x_dim, dtype=x.dtype), torch.ones(ppca.x_dim, dtype=x.dtype)])
    with torch.no_grad():
        joint = torch.stack([dist.Normal(z @ ppca.W.T + ppca.mu + s, ppca.sigma).to_event(1).log_prob(x[:6])
                             for s in shifts]).logsumexp(0) + torch.log(torch.tensor(0.5, dtype=x.dtype))
        expected = joint + dist.Normal(0.0, 1.0).log_prob(z).sum(-1) - guide.dist(x[:6]).log_prob(z)
    torch.testing.assert_close(lw, expected, rtol=1e-10, atol=1e-10)


def test_elbo_sums_an_enumerated_site_out_so_its_training_and_test_bounds_are_one_quantity():
    """The elbo objective's training loss on the mixture (Pyro's TraceEnum_ELBO, given by summing_out)
    estimates the same per-point ELBO as the test bound's log weights, y summed out in both; Trace_ELBO
    would sample y from the prior instead, a lower number."""
    from pyro.infer import TraceEnum_ELBO

    from ppl_vae.inference.checks import summing_out

    ppca, guide, x = setup()
    model, q = enumerated_pair(ppca, guide)
    k, n = 2000, x.shape[0]
    objective = objectives.make("elbo", particles=k)
    guide_tr = poutine.trace(q).get_trace(x)
    objective = summing_out(objective, poutine.trace(poutine.replay(model, trace=guide_tr)).get_trace(x), guide_tr)
    assert isinstance(objective.loss, TraceEnum_ELBO)
    pyro.set_rng_seed(0)
    with torch.no_grad():
        train = -objective.loss.loss(model, q, x) / n
        lw = log_weights(model, q, x, particles=k)
    test = lw.mean().item()
    se = lw.std().item() / math.sqrt(k * n) * math.sqrt(2)  # two independent estimates of one mean
    assert abs(train - test) < 4 * se, (train, test, se)
    with torch.no_grad(), pytest.warns(UserWarning, match="in model but not guide"):
        sampled = -objectives.make("elbo", particles=k).loss.loss(model, q, x) / n  # y from the prior
    assert sampled < test - 10 * se, (sampled, test)


def mixture_prior_pair(ppca, guide):
    """z's prior a two-component mixture: no closed-form KL to the guide's Gaussian."""
    def model(x, idx=None):
        pyro.module("ppca", ppca)
        with pyro.plate("data", x.shape[0]):
            components = dist.Normal(torch.stack([x.new_zeros(ppca.latent_dim), x.new_ones(ppca.latent_dim)]),
                                     1.0).to_event(1)
            prior = dist.MixtureSameFamily(dist.Categorical(logits=x.new_zeros(2)), components)
            z = pyro.sample("z", prior)
            pyro.sample("x", dist.Normal(z @ ppca.W.T + ppca.mu, ppca.sigma).to_event(1), obs=x)

    def q(x, idx=None):
        pyro.module("q", guide)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", guide.dist(x))

    return model, q


def test_elbo_analytic_refuses_a_kl_it_would_estimate_by_monte_carlo(digits):
    from ppl_vae.errors import UsageError
    from ppl_vae.guides.gaussian import DiagonalGaussian
    from ppl_vae.models.vae import VAE

    ppca, guide, x = setup()
    ppca, guide = ppca.float(), guide.float()
    with pytest.raises(UsageError, match="site 'z' has no closed-form KL"):
        fit(*mixture_prior_pair(ppca, guide), Dataset.from_tensors(x), "elbo-analytic", epochs=1, progress=False,
            device="cpu")
    fit(*mixture_prior_pair(ppca, guide), Dataset.from_tensors(x), "elbo", epochs=1, progress=False, device="cpu")
    vae, encoder = VAE(64, 2, (8,)), DiagonalGaussian(64, 2, (8,))  # Normal against Normal: closed form, trains
    fit(vae, encoder, Dataset.from_tensors(digits.x_train[:200]), "elbo-analytic", epochs=1, progress=False,
        device="cpu")


def test_check_tabulates_what_each_objective_does_with_a_pair():
    import ppl_vae

    ppca, guide, x = setup()
    ppca, guide = ppca.float(), guide.float()
    data = Dataset.from_tensors(x)
    plain = ppl_vae.check(*pair(ppca, guide, False), data)
    assert set(plain) == set(objectives.OBJECTIVES)
    assert all(v == "ok" for k, v in plain.items()
               if k not in ("enum", "disarm", "arm", "relax", "concrete", "concrete-st", "fivo")), plain
    assert plain["enum"].startswith("refused: the enum objective sums discrete sites")
    assert plain["disarm"].startswith("refused: disarm is an estimator for Bernoulli latents")  # PPCA's z is Gaussian
    assert plain["relax"].startswith("refused: relax is an estimator for Bernoulli latents")
    assert plain["concrete"].startswith("refused: the guide samples no Bernoulli or one-hot categorical latent")
    assert plain["fivo"].startswith("refused: the fivo objective resamples particles between time steps")
    global_ = ppl_vae.check(*global_latent_pair(ppca, guide), data, ["elbo", "iwae"])
    assert all("latent site 'mu' lies outside pyro.plate('data')" in v for v in global_.values()), global_
    mixed = ppl_vae.check(*enumerated_pair(ppca, guide), data, ["elbo", "score", "iwae", "dreg", "enum"])
    assert mixed["elbo"] == mixed["iwae"] == mixed["dreg"] == mixed["enum"] == "ok", mixed
    assert mixed["score"].startswith("refused:"), mixed
    assert ppl_vae.check(*pair(ppca, guide, False), data, ["iwae"]) == {"iwae": "ok"}  # and it trained nothing
    assert torch.equal(guide.log_diag, exact_guide(small_ppca()).log_diag.float() + 0.3)
