"""The Concrete relaxation (ppl_vae/inference/objectives/concrete.py) against exact answers (float64):

- concrete's training value is the relaxed ELBO L_τ, checked against a quadrature of its integral over y for
  one relaxed Bernoulli latent (log p(x | σ(y)) + log p_τ(y) − log q_τ(y) under q_τ(y));
- concrete-st's training value is the discrete ELBO's estimate: its mean is the ELBO summed over all 2^D states;
- both report the discrete model's ELBO as their test bound, the same number elbo reports;
- refusals, the temperature's schedule and a training run."""

import itertools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch.distributions.relaxed_bernoulli import LogitRelaxedBernoulli

from ppl_vae import Dataset, fit
from ppl_vae.errors import UsageError
from ppl_vae.inference import objectives

X = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.3, -0.7]], dtype=torch.float64)
G = torch.Generator().manual_seed(0)


def pair(d: int, dtype=torch.float64):
    prior = torch.linspace(-1.0, 1.0, d, dtype=dtype)
    w0 = torch.randn(d, 3, generator=G, dtype=torch.float64).to(dtype)
    a0 = 0.5 * torch.randn(3, d, generator=G, dtype=torch.float64).to(dtype)

    def model(x):
        w = pyro.param("W", w0.clone())
        with pyro.plate("data", x.shape[0]):
            b = pyro.sample("b", dist.Bernoulli(logits=prior).to_event(1))
            pyro.sample("x", dist.Normal(b @ w, 1.0).to_event(1), obs=x)

    def guide(x):
        a_mat = pyro.param("A", a0.clone())
        with pyro.plate("data", x.shape[0]):
            pyro.sample("b", dist.Bernoulli(logits=x @ a_mat).to_event(1))

    return model, guide, prior, w0, a0


def mean_value(objective, model, guide, draws: int, copies: int = 500):
    """The mean over draws of the training value per data point (−loss / points), with its standard error."""
    values = torch.tensor([-objective.loss.loss(model, guide, X.repeat(copies, 1)) / (copies * X.shape[0])
                           for _ in range(draws)])
    return values.mean().item(), values.std().item() / math.sqrt(draws)


def test_concrete_trains_the_relaxed_elbo_of_its_quadrature():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    tau = 0.7
    model, guide, prior, w0, a0 = pair(1)
    objective = objectives.make("concrete", temperature=tau)
    got, se = mean_value(objective, model, guide, draws=40)
    # ∫ q_τ(y) [log N(x; σ(y) w, 1) + log p_τ(y) − log q_τ(y)] dy per data point, on a fine grid of y
    y = torch.linspace(-60, 60, 400_001, dtype=torch.float64)[:, None]
    q = LogitRelaxedBernoulli(torch.tensor(tau, dtype=torch.float64), logits=(X @ a0)[:, 0])   # [N]
    p = LogitRelaxedBernoulli(torch.tensor(tau, dtype=torch.float64), logits=prior)
    log_q, log_p = q.log_prob(y), p.log_prob(y)                                                # [Y, N]
    log_lik = dist.Normal(torch.sigmoid(y)[..., None] * w0[0], 1.0).log_prob(X).sum(-1)        # [Y, N]
    integrand = log_q.exp() * (log_lik + log_p - log_q)
    exact = (torch.trapezoid(integrand, y[:, 0], dim=0)).mean().item()
    assert abs(got - exact) < 4 * se, (got, exact, se)
    # and it is not the discrete ELBO (the relaxation is another model): the two differ by far more than se
    states = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    log_qd = dist.Bernoulli(logits=X @ a0).log_prob(states[:, None]).sum(-1)
    log_pd = dist.Bernoulli(logits=prior).log_prob(states).sum(-1)[:, None] + \
        dist.Normal(states @ w0, 1.0).log_prob(X[:, None]).sum(-1).T
    discrete = (log_qd.exp() * (log_pd - log_qd)).sum(0).mean().item()
    assert abs(exact - discrete) > 10 * se


def test_concrete_st_trains_the_discrete_elbo_value():
    pyro.clear_param_store()
    pyro.set_rng_seed(1)
    d = 6
    model, guide, prior, w0, a0 = pair(d)
    got, se = mean_value(objectives.make("concrete-st", temperature=0.5), model, guide, draws=40)
    states = torch.tensor(list(itertools.product([0.0, 1.0], repeat=d)), dtype=torch.float64)
    log_q = dist.Bernoulli(logits=X @ a0).log_prob(states[:, None]).sum(-1)
    log_p = dist.Bernoulli(logits=prior).log_prob(states).sum(-1)[:, None] + \
        dist.Normal(states @ w0, 1.0).log_prob(X[:, None]).sum(-1).T
    exact = (log_q.exp() * (log_p - log_q)).sum(0).mean().item()
    assert abs(got - exact) < 4 * se, (got, exact, se)


@pytest.mark.parametrize("name", ["concrete", "concrete-st"])
def test_the_test_bound_is_the_discrete_models_elbo(name):
    pyro.clear_param_store()
    model, guide, *_ = pair(4)
    objective = objectives.make(name)
    assert objective.test_quantity == "ELBO of the discrete model" and "ELBO" in objective.train_quantity
    pyro.set_rng_seed(3)
    mine = objective.test_bound(model, guide, X)
    pyro.set_rng_seed(3)
    elbo = objectives.make("elbo").test_bound(model, guide, X)
    assert torch.equal(mine, elbo)


def test_a_gradient_reaches_the_guide_through_the_relaxed_samples():
    pyro.clear_param_store()
    model, guide, *_ = pair(4)
    for name in ("concrete", "concrete-st"):
        loss = objectives.make(name).loss
        loss.loss_and_grads(model, guide, X)
        a_mat = pyro.get_param_store()["A"]
        assert a_mat.grad is not None and a_mat.grad.abs().sum() > 0
        a_mat.grad = None


def test_the_temperature_follows_its_schedule_and_the_trainer_sets_it():
    loss = objectives.make("concrete", temperature=2.0, anneal_rate=0.01, min_temperature=0.5).loss
    loss.at_step(0)
    assert loss.temperature == 2.0
    loss.at_step(100)
    assert loss.temperature == pytest.approx(2.0 * math.exp(-1.0))
    loss.at_step(10_000)
    assert loss.temperature == 0.5
    pyro.clear_param_store()
    model, guide, *_ = pair(3, torch.float32)
    objective = objectives.make("concrete", temperature=2.0, anneal_rate=0.01, min_temperature=0.5)
    x = X.repeat(20, 1).float()
    fit(model, guide, Dataset.from_tensors(x, x), objective=objective, epochs=2, batch_size=10, progress=False)
    assert objective.loss.temperature == pytest.approx(2.0 * math.exp(-0.01 * 7))  # steps 0..7: the 8th step's


@pytest.mark.parametrize("name", ["concrete", "concrete-st"])
def test_programs_without_a_relaxable_latent_are_refused_with_one_sentence(name):
    objective = objectives.make(name)

    def gaussian_guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("b", dist.Normal(torch.zeros(4, dtype=x.dtype), 1.0).to_event(1))

    def poisson_model(x):
        with pyro.plate("data", x.shape[0]):
            k = pyro.sample("k", dist.Poisson(torch.full((3,), 2.0, dtype=x.dtype)).to_event(1))
            pyro.sample("x", dist.Normal(k, 1.0).to_event(1), obs=x)

    def poisson_guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("k", dist.Poisson(torch.full((3,), 2.0, dtype=x.dtype)).to_event(1))

    model, *_ = pair(4)
    pyro.clear_param_store()
    with pytest.raises(UsageError, match=f"no Bernoulli or one-hot categorical latent for {name} to relax"):
        objective.loss.loss(lambda x: None, gaussian_guide, X)
    with pytest.raises(UsageError, match=f"{name} relaxes Bernoulli and one-hot categorical latents, and site 'k' "
                                         f"draws from Poisson"):
        objective.loss.loss(poisson_model, poisson_guide, X)


@pytest.mark.parametrize("options", [dict(temperature=0.0), dict(temperature=-1.0), dict(min_temperature=0.0),
                                     dict(anneal_rate=-0.1)])
def test_a_temperature_that_is_not_positive_is_refused(options):
    with pytest.raises(UsageError, match="--temperature and --min-temperature must be positive|--anneal-rate"):
        objectives.make("concrete", **options)


def test_the_categorical_relaxation_trains_a_one_hot_latent():
    """A small categorical-latent VAE (4 latents × 5 categories) trained with concrete and concrete-st on data
    drawn from 5 prototypes with 5 % of bits flipped: the test ELBO of the discrete model rises."""
    k, groups = 5, 4
    torch.manual_seed(0)
    prototypes = (torch.rand(k, 12) < 0.5).float()
    x = (prototypes[torch.randint(k, (200,))] + (torch.rand(200, 12) < 0.05).float()) % 2
    modules = {}

    def model(x):
        pyro.module("decoder", modules["decoder"])
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.OneHotCategorical(logits=x.new_zeros(groups, k)).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=modules["decoder"](z.flatten(-2))).to_event(1), obs=x)

    def guide(x):
        pyro.module("encoder", modules["encoder"])
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.OneHotCategorical(logits=modules["encoder"](x).reshape(-1, groups, k)).to_event(1))

    for name in ("concrete", "concrete-st"):
        pyro.clear_param_store()
        torch.manual_seed(1)
        modules.update(decoder=torch.nn.Linear(groups * k, 12), encoder=torch.nn.Linear(12, groups * k))
        history = fit(model, guide, Dataset.from_tensors(x[:150], x[150:]), objective=name, epochs=40, lr=3e-2, batch_size=25,
                      progress=False)
        assert history[-1]["test_bound"] > history[0]["test_bound"] + 0.3, (name, history[0], history[-1])


@pytest.mark.parametrize("name", ["concrete", "concrete-st"])
def test_the_recorded_step_is_the_eager_one_and_an_annealed_temperature_is_not_recorded(name):
    from ppl_vae.inference import record

    pyro.clear_param_store()
    model, guide, *_ = pair(5)
    objective = objectives.make(name, temperature=0.6)
    assert objective.recordable and not objectives.make(name, anneal_rate=1e-3).recordable
    fast = record.record(objective.loss, model, guide, (X.repeat(3, 1),), {})
    other = X.flip(0).repeat(3, 1)
    pyro.set_rng_seed(5)
    eager = record.loss_and_gradients(objective.loss, model, guide, (other,), {})
    pyro.set_rng_seed(5)
    replayed = record.loss_and_gradients(fast, model, guide, (other,), {})
    assert record.difference(eager, replayed) is None, record.difference(eager, replayed)


def test_the_command_line_trains_it_and_labels_both_numbers_and_refuses_bad_input(tmp_path, capsys):
    """scripts/examples/sbn.py (a sigmoid belief network written as a user's pair) trains with concrete; the line
    says the training value is the relaxed ELBO and the test bound the discrete model's ELBO; a temperature of 0,
    --temperature with another objective and the built-in VAE's Gaussian latent are refused in one sentence."""
    from helpers import ROOT, run_cli

    code, out, err = run_cli(["train", "--pair", f"{ROOT / 'scripts/examples/sbn.py'}:make_pair", "--objective",
                              "concrete", "--temperature", "0.67", "--epochs", "1", "--out", tmp_path / "sbn",
                              "--no-progress"], capsys)
    assert code == 0, err
    assert "train relaxed ELBO of the Concrete-relaxed model (not a bound on the discrete model's log p(x))" in out
    assert "test ELBO of the discrete model" in out
    for argv, said in [(["--objective", "concrete", "--temperature", "0"], "--temperature and --min-temperature must"),
                       (["--objective", "elbo", "--temperature", "0.5"], "--temperature is an option of concrete"),
                       (["--objective", "concrete-st"], "the guide samples no Bernoulli or one-hot categorical")]:
        code, _, err = run_cli(["train", *argv, "--epochs", "1", "--out", tmp_path / "vae"], capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and said in lines[0], err
