"""Where the objectives meet Pyro: RenyiELBO's batch-level bound, user guides, hierarchies, bad combinations."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import RenyiELBO
from torch import nn

from helpers import small_ppca
from ppl_vae.errors import UsageError
from ppl_vae.inference.objectives import make
from helpers import log_w_plain, mean_se, setup


def batch_references(ppca, guide, x, k, replicates=40000):
    """(Σ_n per-point IWAE-K, whole-batch IWAE-K) samples: the second treats the batch as one data point."""
    log_w = log_w_plain(ppca, guide, x, (replicates, k)).detach()  # [R, K, N]
    return (torch.logsumexp(log_w, 1) - math.log(k)).sum(1), torch.logsumexp(log_w.sum(2), 1) - math.log(k)


def draws(loss, model, guide, x, n=150):
    return torch.tensor([-loss.loss(model, guide, x) for _ in range(n)], dtype=torch.float64)


def pyro_iwae(k):
    return RenyiELBO(alpha=0, num_particles=k, vectorize_particles=True, max_plate_nesting=1)


def test_iwae_is_the_per_data_point_bound():
    """Ours is Σ_n log (1/K) Σ_k w_kn; the batch-as-one-point bound is far below it. Pyro 1.9's
    RenyiELBO(α=0) agrees with ours on this model, whose every site lies in the data plate."""
    ppca, guide, x = setup(n=8)
    k = 5
    per_point, whole_batch = batch_references(ppca, guide, x, k)
    (o, o_se), (p, p_se) = mean_se(draws(make("iwae", particles=k).loss, ppca.model, guide.guide, x)), \
        mean_se(draws(pyro_iwae(k), ppca.model, guide.guide, x))
    (ref, ref_se), (batch, _) = mean_se(per_point), mean_se(whole_batch)
    assert abs(o - ref) < 4 * math.hypot(o_se, ref_se)
    assert abs(p - o) < 4 * math.hypot(p_se, o_se)
    assert ref - batch > 5  # nats: summing over the plate before the log-sum-exp would matter


def test_pyro_renyi_elbo_sums_over_the_data_plate_when_a_site_lies_outside_it():
    """One observed site outside the data plate (here a constant) makes Pyro's RenyiELBO sum log w
    over the data points before the log-sum-exp: the batch-as-one-point bound, pyro issues #2220,
    #3104. Per-data-point weights do not exist for such a model, and ours says so."""
    ppca, guide, x = setup(n=8)
    k = 5

    def model(x):
        ppca.model(x)
        pyro.sample("y", dist.Normal(0.0, 1.0), obs=torch.tensor(0.0, dtype=x.dtype))

    log_py = dist.Normal(0.0, 1.0).log_prob(torch.tensor(0.0)).item()
    per_point, whole_batch = batch_references(ppca, guide, x, k)
    p, p_se = mean_se(draws(pyro_iwae(k), model, guide.guide, x))
    (ref, ref_se), (batch, batch_se) = mean_se(per_point + log_py), mean_se(whole_batch + log_py)
    assert abs(p - batch) < 4 * math.hypot(p_se, batch_se)
    assert ref - p > 4 * math.hypot(ref_se, p_se)
    with pytest.raises(ValueError, match="'y' is outside pyro.plate"):
        make("iwae", particles=k).loss.loss(model, guide.guide, x)


def test_renyi_at_alpha_zero_is_iwae():
    ppca, guide, x = setup()
    values = []
    for objective in (make("iwae", particles=4), make("renyi", particles=4, alpha=0.0)):
        pyro.set_rng_seed(3)
        values.append(objective.loss.loss(ppca.model, guide.guide, x))
    assert values[0] == pytest.approx(values[1], rel=1e-12)


def binary_model(x, idx=None):
    """A user's model, a plain function: binary latents z ∈ {0, 1}², x | z ~ N(W z, I)."""
    W = pyro.param("W", torch.ones(x.shape[1], 2, dtype=x.dtype))
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Bernoulli(x.new_full((2,), 0.5)).to_event(1))
        pyro.sample("x", dist.Normal(z @ W.T, 1.0).to_event(1), obs=x)


def binary_guide(x, idx=None):
    """Its guide: q(z | x) = Bernoulli(σ(B x)), which has no reparameterized sampler."""
    B = pyro.param("B", torch.zeros(2, x.shape[1], dtype=x.dtype))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Bernoulli(logits=x @ B.T).to_event(1))


@pytest.mark.parametrize("name", ["iwae", "renyi", "stl", "dreg"])
def test_objectives_that_need_rsample_refuse_a_guide_without_it(name):
    _, _, x = setup()
    with pytest.raises(UsageError, match=f"objective '{name}'.*site 'z'.*use elbo, elbo-analytic, score, score-avg, score-nn, rws, vimco, disarm, arm, relax, concrete or concrete-st instead"):
        make(name, particles=3).loss.loss_and_grads(binary_model, binary_guide, x)


@pytest.mark.parametrize("name", ["rws", "vimco", "score", "score-avg", "score-nn", "relax"])
def test_rws_and_score_function_train_a_discrete_user_guide(name):
    _, _, x = setup()
    svi = pyro.infer.SVI(binary_model, binary_guide, pyro.optim.Adam({"lr": 0.05}), loss=make(name, particles=3).loss)
    losses = [svi.step(x) for _ in range(20)]
    assert all(math.isfinite(v) for v in losses)
    assert pyro.param("B").abs().sum() > 0  # the guide learned (it starts at zero)


def test_bad_options_are_one_sentence():
    with pytest.raises(UsageError, match="--jit"):
        make("iwae", jit=True)
    with pytest.raises(UsageError, match="--alpha must be"):
        make("renyi", alpha=1.0)
    with pytest.raises(UsageError, match="--baseline-beta"):
        make("score-avg", baseline_beta=1.0)
    with pytest.raises(UsageError, match="--baseline-beta"):
        make("relax", baseline_beta=-0.1)


class TwoLayer(nn.Module):
    """z1 ~ N(0, I), z2 | z1 ~ N(a z1, I), x | z2 ~ N(W z2 + μ, σ² I): a linear-Gaussian hierarchy.

    ``guide`` is its exact posterior, sampled top-down as q(z2 | x) q(z1 | z2):
    p(z2 | x) is PPCA's posterior with prior N(0, (1 + a²) I), and p(z1 | z2) = N(c z2, d² I)
    with c = a / (1 + a²), d² = 1 / (1 + a²).
    """

    def __init__(self, ppca, a=1.5):
        super().__init__()
        self.ppca, self.a = ppca, a
        W, mu, s2 = ppca.W.detach(), ppca.mu.detach(), ppca.sigma.detach() ** 2
        prec = torch.eye(ppca.latent_dim, dtype=W.dtype) / (1 + a * a) + W.T @ W / s2
        cov = torch.linalg.inv(prec)
        self.A = nn.Parameter(cov @ W.T / s2)
        self.b = nn.Parameter(-self.A.detach() @ mu)
        self.L = nn.Parameter(torch.linalg.cholesky(cov).contiguous())  # Pyro copies non-contiguous params
        self.c = nn.Parameter(torch.tensor(a / (1 + a * a), dtype=W.dtype))
        self.log_d = nn.Parameter(torch.tensor(-0.5 * math.log(1 + a * a), dtype=W.dtype))

    def log_marginal(self, x):
        W = self.ppca.W.detach()
        cov = (1 + self.a ** 2) * W @ W.T + self.ppca.sigma.detach() ** 2 * torch.eye(W.shape[0], dtype=W.dtype)
        return dist.MultivariateNormal(self.ppca.mu.detach(), cov).log_prob(x)

    def model(self, x, idx=None):
        q = self.ppca.latent_dim
        with pyro.plate("data", x.shape[0]):
            z1 = pyro.sample("z1", dist.Normal(x.new_zeros(q), 1.0).to_event(1))
            z2 = pyro.sample("z2", dist.Normal(self.a * z1, 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z2 @ self.ppca.W.T + self.ppca.mu, self.ppca.sigma).to_event(1), obs=x)

    def guide(self, x, idx=None):
        pyro.module("two_layer", self)
        with pyro.plate("data", x.shape[0]):
            z2 = pyro.sample("z2", dist.MultivariateNormal(x @ self.A.T + self.b, scale_tril=self.L))
            pyro.sample("z1", dist.Normal(self.c * z2, self.log_d.exp()).to_event(1))


@pytest.mark.parametrize("name", ["stl", "dreg"])
def test_path_derivative_vanishes_at_the_exact_posterior_of_a_hierarchy(name):
    """q(z1 | z2) depends on φ through z2 as well: only replaying the guide removes the score terms right."""
    pair = TwoLayer(small_ppca()).double()
    x = pair.ppca.marginal().sample((6,)).detach()
    loss = -make(name, particles=4).loss.loss_and_grads(pair.model, pair.guide, x)
    assert loss == pytest.approx(pair.log_marginal(x).sum().item(), abs=1e-9)
    guide_grads = torch.cat([p.grad.flatten() for n, p in pair.named_parameters() if not n.startswith("ppca")])
    assert guide_grads.abs().max() < 1e-10


@pytest.mark.parametrize("name", ["score-avg", "score-nn"])
def test_score_function_baselines_resume_bit_identically(name, digits, tmp_path):
    """The running average and the baseline network live in the param store and the checkpoint."""
    from ppl_vae.guides.gaussian import DiagonalGaussian
    from ppl_vae.models.vae import VAE
    from ppl_vae import fit
    from ppl_vae.io import checkpoint

    def pair():
        torch.manual_seed(0)
        return VAE(digits.x_dim, 2, (16,)), DiagonalGaussian(digits.x_dim, 2, (16,))

    straight = fit(*pair(), digits, make(name, particles=2), epochs=2, out=str(tmp_path / "a"), progress=False)
    fit(*pair(), digits, make(name, particles=2), epochs=1, out=str(tmp_path / "b"), progress=False)
    resumed = fit(*pair(), digits, make(name, particles=2), epochs=2, out=str(tmp_path / "b"), resume=True,
                  progress=False)
    a = checkpoint.load(tmp_path / "a" / "checkpoint.pt")["params"]
    b = checkpoint.load(tmp_path / "b" / "checkpoint.pt")["params"]
    assert any(k.startswith("__baseline_avg") for k in a)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert straight[-1]["train_bound"] == resumed[-1]["train_bound"]


def test_particles_are_the_plate_at_dim_minus_two():
    ppca, guide, x = setup()
    p = make("dreg", particles=3).loss.draw(ppca.model, guide.guide, x)
    assert p.guide_trace.nodes["z"]["value"].shape == (3, x.shape[0], 2)  # [K, N, latent]
