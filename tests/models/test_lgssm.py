"""The linear-Gaussian state-space model against exact answers: its Kalman filter and smoother against
Gaussian conditioning of the joint written out in full, every bound of its exact posterior guide equal to
log p(x), and the bounds of a worse guide below it, tightening with K, with evaluate's NLL on the Kalman
value within its Monte Carlo error. Float64 throughout."""

import math

import pyro
import pytest
import torch

from ppl_vae import Dataset, evaluate, fit
from ppl_vae.inference import objectives
from ppl_vae.models.lgssm import LGSSM

B, T, D, K = 6, 5, 3, 2


def lgssm(seed: int = 0) -> LGSSM:
    torch.manual_seed(seed)
    m = LGSSM(D, K, init_scale=1.3).double()
    with torch.no_grad():
        m.A.copy_(torch.tensor([[0.8, 0.3], [-0.2, 0.7]]))
        m.log_q.copy_(torch.tensor([-0.5, -0.8]))
        m.log_r.copy_(torch.tensor([-0.3, -0.6, -0.1]))
    return m


def sequences(m: LGSSM, seed: int = 1):
    """B sequences drawn from the model, of lengths T, T − 1, …, and their lengths."""
    pyro.set_rng_seed(seed)
    x = torch.zeros(B, T, D, dtype=torch.float64)
    trace = pyro.poutine.trace(pyro.poutine.uncondition(m.model)).get_trace(x)
    x = torch.stack([trace.nodes[f"x_{t}"]["value"] for t in range(T)], 1).detach()
    lengths = torch.tensor([T, T, T - 1, T - 2, 2, 1])
    return x * (torch.arange(T) < lengths[:, None])[..., None], lengths


def joint(m: LGSSM, length: int):
    """The mean-zero joint covariance of (z_{1:L}, x_{1:L}), written out: z = L_A ε, x = (I ⊗ C) z + noise."""
    A, C = m.A.detach(), m.C.detach()
    Q, R = torch.diag(m.log_q.detach().exp() ** 2), torch.diag(m.log_r.detach().exp() ** 2)
    cov_z = torch.zeros(length * K, length * K, dtype=torch.float64)
    covs = [m.init_scale ** 2 * torch.eye(K, dtype=torch.float64)]
    for t in range(1, length):
        covs.append(A @ covs[-1] @ A.T + Q)
    for s in range(length):
        for t in range(s, length):
            block = torch.linalg.matrix_power(A, t - s) @ covs[s]   # Cov(z_t, z_s) for t ≥ s
            cov_z[t * K:(t + 1) * K, s * K:(s + 1) * K] = block
            cov_z[s * K:(s + 1) * K, t * K:(t + 1) * K] = block.T
    big_c = torch.block_diag(*[C] * length)
    cov_x = big_c @ cov_z @ big_c.T + torch.block_diag(*[R] * length)
    return cov_z, big_c @ cov_z, cov_x


def test_kalman_filter_and_smoother_equal_gaussian_conditioning_of_the_joint():
    m = lgssm()
    x, lengths = sequences(m)
    log_px = m.log_marginal(x, lengths)
    means, covs = m.smoother(x, lengths)
    for b in range(B):
        n = int(lengths[b])
        cov_z, cov_xz, cov_x = joint(m, n)
        xs = x[b, :n].reshape(-1)
        exact = torch.distributions.MultivariateNormal(torch.zeros(n * D, dtype=torch.float64), cov_x).log_prob(xs)
        assert log_px[b].item() == pytest.approx(exact.item(), abs=1e-10)
        gain = torch.linalg.solve(cov_x, cov_xz).T
        post_mean, post_cov = gain @ xs, cov_z - gain @ cov_xz
        for t in range(n):
            assert torch.allclose(means[b, t], post_mean[t * K:(t + 1) * K], atol=1e-10)
            assert torch.allclose(covs[b, t], post_cov[t * K:(t + 1) * K, t * K:(t + 1) * K], atol=1e-10)


@pytest.mark.parametrize("name", ["elbo", "iwae", "renyi", "stl", "dreg", "rws"])
def test_every_bound_of_the_exact_posterior_guide_is_log_p_x(name):
    m = lgssm()
    x, lengths = sequences(m)
    bound = objectives.make(name, particles=4).test_bound(m.model, m.exact_guide, x, lengths=lengths)
    assert torch.allclose(bound, m.log_marginal(x, lengths), atol=1e-9)


@pytest.mark.slow
def test_a_guide_that_ignores_time_dependence_falls_short_its_iwae_bound_tightens_and_evaluate_finds_kalman():
    m = lgssm()
    x, lengths = sequences(m)
    exact = m.log_marginal(x, lengths).mean().item()
    pyro.set_rng_seed(0)
    means, ses = [], []  # E[L_K] by independent repeats (copies of the sequences, drawn at once), with its SE
    for k, repeats in ((1, 2000), (10, 800), (100, 400)):  # L_100 − L_10 is ~0.04 nats: SEs well below it
        iwae = objectives.make("iwae", particles=k)
        copies = iwae.test_bound(m.model, m.marginal_guide, x.repeat(repeats, 1, 1), lengths=lengths.repeat(repeats))
        draws = copies.reshape(repeats, -1).mean(1)
        means.append(draws.mean().item())
        ses.append(draws.std().item() / math.sqrt(repeats))
    for a in range(2):  # L_1 < L_10 < L_100, each step beyond four standard errors of the difference
        assert means[a + 1] - means[a] > 4 * math.hypot(ses[a], ses[a + 1]), (means, ses)
    assert means[2] < exact + 4 * ses[2]
    model = lambda x, lengths=None: m.model(x, lengths)  # noqa: E731 — not the module, so evaluate samples
    result = evaluate(model, m.marginal_guide, x, particles=4000, inputs={"lengths": lengths})
    assert result["estimate"] == "importance-sampled" and result["quantity"] == "log p(x | lengths)"
    assert abs(-result["test_nll"] - exact) < 4 * result["test_nll_mc_se"]
    assert result["test_elbo"] < exact - 10 * result["test_elbo_mc_se"]
    assert evaluate(m.model, m.exact_guide, x, inputs={"lengths": lengths})["test_nll"] == pytest.approx(-exact)


def test_training_on_the_exact_posterior_raises_the_kalman_likelihood():
    """The ELBO's gradient in θ at q = p(z | x) is ∇ log p(x) (Fisher's identity): fit climbs log p(x)."""
    truth = lgssm()
    x, lengths = sequences(truth)
    m = lgssm(seed=3).float()
    with torch.no_grad():
        m.A.mul_(0.3)
        m.log_r.add_(0.8)
    data = Dataset.from_tensors({"x": x.float(), "lengths": lengths}, {"x": x.float(), "lengths": lengths})
    before = m.log_marginal(x.float(), lengths).mean().item()
    history = fit(m.model, m.exact_guide, data, "elbo", epochs=30, batch_size=B, lr=0.05, progress=False,
                  device="cpu")
    after = m.log_marginal(x.float(), lengths).mean().item()
    assert after > before + 1.0, (before, after)
    assert history[-1]["test_bound"] == pytest.approx(after, abs=1e-3 * abs(after))  # the bound is log p(x)
    assert math.isfinite(history[-1]["train_bound"])
