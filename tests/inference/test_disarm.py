"""ARM and DisARM (ppl_vae/inference/objectives/disarm.py) on a model with 8 binary latents, small enough to
sum over all 256 states: the exact ELBO and its exact gradient in θ and φ are the reference (float64).
Each estimator's mean over 4000 draws is within four standard errors of the exact gradient, and on the
same antithetic pairs DisARM's variance is below ARM's and below REINFORCE's with the same two draws."""

import itertools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from helpers import exact_two_layer_elbo, two_layer_pair
from ppl_vae.errors import UsageError
from ppl_vae.inference import objectives
from ppl_vae.inference.objectives.disarm import DisARMLoss

D, X_DIM = 8, 3
X = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.3, -0.7]], dtype=torch.float64)
PRIOR = torch.linspace(-1.0, 1.0, D, dtype=torch.float64)
G = torch.Generator().manual_seed(0)
W0, A0 = torch.randn(D, X_DIM, generator=G, dtype=torch.float64), 0.5 * torch.randn(X_DIM, D, generator=G, dtype=torch.float64)


def model(x):
    w = pyro.param("W", W0.clone())
    c = pyro.param("c", torch.zeros(X_DIM, dtype=torch.float64))
    with pyro.plate("data", x.shape[0]):
        b = pyro.sample("b", dist.Bernoulli(logits=PRIOR).to_event(1))
        pyro.sample("x", dist.Normal(b @ w + c, 1.0).to_event(1), obs=x)


def guide(x):
    a_mat = pyro.param("A", A0.clone())
    a = pyro.param("a", torch.full((D,), 0.2, dtype=torch.float64))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("b", dist.Bernoulli(logits=x @ a_mat + a).to_event(1))


def exact_elbo(w, c, a_mat, a) -> torch.Tensor:
    """Σ_n Σ_b q(b | x_n) [log p(x_n, b) − log q(b | x_n)], over all 2^D values of b."""
    states = torch.tensor(list(itertools.product([0.0, 1.0], repeat=D)), dtype=torch.float64)  # [S, D]
    log_q = dist.Bernoulli(logits=X @ a_mat + a).log_prob(states[:, None]).sum(-1)            # [S, N]
    log_p = (dist.Bernoulli(logits=PRIOR).log_prob(states).sum(-1)[:, None]
             + dist.Normal(states @ w + c, 1.0).log_prob(X[:, None]).sum(-1).T)               # [S, N]
    return (log_q.exp() * (log_p - log_q)).sum()


NAMES = ("W", "c", "A", "a")


def gradient_draws(arm: bool, copies: int = 100, steps: int = 40, seed: int = 0) -> dict[str, torch.Tensor]:
    """[steps, ...] per parameter: each the mean over ``copies`` independent draws (X repeated), of ∇ ELBO."""
    pyro.clear_param_store()
    loss = DisARMLoss(arm=arm)
    loss.loss(model, guide, X)  # creates the parameters
    store = pyro.get_param_store()
    pyro.set_rng_seed(seed)
    draws = {name: [] for name in NAMES}
    for _ in range(steps):
        loss.loss_and_grads(model, guide, X.repeat(copies, 1))
        for name in NAMES:
            param = store[name].unconstrained()
            draws[name].append(-param.grad.clone() / copies)  # the loss is −Σ bound over every copy
            param.grad = None
    return {name: torch.stack(v) for name, v in draws.items()}


@pytest.mark.parametrize("arm", [False, True], ids=["disarm", "arm"])
def test_the_gradient_is_unbiased_for_the_exact_elbo(arm):
    draws = gradient_draws(arm)
    store = pyro.get_param_store()
    exact = torch.autograd.grad(exact_elbo(*(store[n] for n in NAMES)), [store[n] for n in NAMES])
    for name, truth in zip(NAMES, exact):
        mean, se = draws[name].mean(0), draws[name].std(0) / math.sqrt(len(draws[name]))
        assert ((mean - truth).abs() < 4 * se + 1e-12).all(), (name, mean, truth, se)


def test_the_bound_is_the_elbo_of_the_pair():
    pyro.clear_param_store()
    pyro.set_rng_seed(1)
    loss = DisARMLoss()
    values = torch.tensor([-loss.loss(model, guide, X.repeat(200, 1)) / 200 for _ in range(20)])
    store = pyro.get_param_store()
    exact = exact_elbo(*(store[n] for n in NAMES)).item()
    assert abs(values.mean().item() - exact) < 4 * values.std().item() / math.sqrt(len(values))


def test_on_the_same_pairs_disarm_varies_less_than_arm_and_reinforce():
    """400 estimates each, every one the mean over 10 copies of the data (a tenth of one draw's variance, for all
    three alike): the variance of the gradient of a (α's bias) summed over its entries; the ratios are
    DisARM : ARM : REINFORCE ≈ 0.8 : 1 : 1.6, the first gap over three standard errors of these variance
    estimates. REINFORCE uses two draws as the others do: ½ Σ_k f(b_k) ∇ log q(b_k)."""
    copies, steps = 10, 400
    disarm, arm = (gradient_draws(a, copies=copies, steps=steps, seed=3)["a"] for a in (False, True))
    pyro.clear_param_store()
    loss = DisARMLoss()
    loss.loss(model, guide, X)
    pyro.set_rng_seed(3)
    reinforce = []
    for _ in range(steps):
        p = loss.draw(model, guide, X.repeat(copies, 1))
        f = p.log_w.detach()                                               # [2, N]
        site = p.guide_trace.nodes["b"]
        b, probs = site["value"], site["fn"].base_dist.probs.detach()      # [2, N, D]
        reinforce.append((0.5 * f[..., None] * (b - probs)).sum((0, 1)) / copies)  # ∂/∂a of ½ Σ_k f_k log q(b_k)
    reinforce = torch.stack(reinforce)
    total = {name: g.var(0).sum().item() for name, g in (("disarm", disarm), ("arm", arm), ("reinforce", reinforce))}
    assert total["disarm"] < total["arm"] and total["disarm"] < total["reinforce"], total


def test_a_latent_that_is_not_bernoulli_is_refused_in_one_sentence(digits):
    from ppl_vae import check
    from helpers import pair

    table = check(*pair(digits), digits)
    assert table["disarm"].startswith("refused: disarm is an estimator for Bernoulli latents, and the guide's site "
                                      "'z' draws from Normal"), table["disarm"]
    assert table["arm"].startswith("refused: arm is an estimator for Bernoulli latents"), table["arm"]


def test_more_than_one_pair_is_refused():
    with pytest.raises(UsageError, match="draws one antithetic pair"):
        objectives.make("disarm", particles=5)


def test_the_recorded_step_is_the_eager_one():
    """The fast path (ppl_vae/inference/record.py) records the antithetic draw and both surrogates: its replay
    on other data gives the eager loss and gradients from the same random numbers."""
    from ppl_vae.inference import record

    pyro.clear_param_store()
    loss = DisARMLoss()
    loss.loss(model, guide, X)
    fast = record.record(loss, model, guide, (X.repeat(3, 1),), {})
    other = X.repeat(3, 1) + 0.25
    pyro.set_rng_seed(7)
    eager = record.loss_and_gradients(loss, model, guide, (other,), {})
    pyro.set_rng_seed(7)
    replayed = record.loss_and_gradients(fast, model, guide, (other,), {})
    assert record.difference(eager, replayed) is None, record.difference(eager, replayed)


def test_a_bernoulli_vae_trains_from_the_command_line_and_a_gaussian_one_is_refused(tmp_path, capsys):
    """scripts/examples/sbn.py, a sigmoid belief network written as a user's pair, trains with disarm; the
    built-in VAE's Gaussian latent is refused before any work."""
    from helpers import ROOT, run_cli

    code, out, err = run_cli(["train", "--pair", f"{ROOT / 'scripts/examples/sbn.py'}:make_pair", "--objective",
                              "disarm", "--epochs", "2", "--out", tmp_path / "sbn", "--no-progress"], capsys)
    assert code == 0, err
    code, _, err = run_cli(["train", "--objective", "arm", "--epochs", "1", "--out", tmp_path / "vae"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "arm is an estimator for Bernoulli latents" in lines[0], err


def test_a_hierarchical_guide_is_estimated_layer_by_layer_without_bias():
    """The two-layer SBN (3 + 3 bits) under q(b₁ | x) q(b₂ | b₁): the mean of 4000 DisARM estimates of every
    parameter's gradient (θ and φ) within four standard errors of the exact ELBO's, summed over all 64 states."""
    torch.manual_seed(0)
    model, guide = (m.double() for m in two_layer_pair(x_dim=4))
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    params = [*model.parameters(), *guide.parameters()]
    exact = torch.autograd.grad(exact_two_layer_elbo(model, guide, x).sum(), params)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    loss, copies, draws = DisARMLoss(), 100, []
    for _ in range(40):
        loss.loss_and_grads(model.model, guide.guide, x.repeat(copies, 1))
        draws.append([-p.grad.clone() / copies for p in params])
        for p in params:
            p.grad = None
    for i, truth in enumerate(exact):
        g = torch.stack([d[i] for d in draws])
        mean, se = g.mean(0), g.std(0) / math.sqrt(len(g))
        assert ((mean - truth).abs() < 4 * se + 1e-12).all(), (i, mean, truth, se)
    assert max(t.abs().max().item() for t in exact[len([*model.parameters()]):]) > 1e-2  # φ's gradient is not ~0
