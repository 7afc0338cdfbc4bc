"""The SMC bound (FIVO / AESMC) against the Kalman filter on the linear-Gaussian state-space model:
many particles reach log p(x), the bound tightens with K and beats the IWAE bound of the same K on
sequences, and FIVO in a plain SVI loop improves a learned proposal. Float64; expectations by
independent repeats, compared within four standard errors."""

import math

import pyro
import pytest
import torch
from pyro.infer import SVI
from pyro.optim import Adam

from ppl_vae.errors import UsageError
from ppl_vae.infer import FIVO
from ppl_vae.inference.smc import smc_log_marginal
from ppl_vae.models.lgssm import Bootstrap, LinearProposal


@pytest.fixture
def setting():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
    from test_lgssm import lgssm, sequences

    m = lgssm()
    x, lengths = sequences(m)
    return m, x, lengths, m.log_marginal(x, lengths)


def repeats(fn, n: int) -> tuple[float, float]:
    """Mean and standard error of ``n`` independent draws of fn() (a float)."""
    draws = torch.tensor([fn() for _ in range(n)], dtype=torch.float64)
    return draws.mean().item(), draws.std().item() / math.sqrt(n)


def test_many_particles_reach_the_kalman_log_likelihood(setting):
    m, x, lengths, exact = setting
    pyro.set_rng_seed(0)
    mean, se = repeats(lambda: (smc_log_marginal(m, Bootstrap(m), x, 3000, lengths) - exact).sum().item(), 10)
    assert abs(mean) < 4 * se + 1e-3, (mean, se)  # E log p̂ − log p ≈ −Var(p̂ / p) / 2: below 1e-3 nats here


@pytest.mark.slow
def test_the_bound_tightens_with_k_and_beats_the_sequences_iwae_bound(setting):
    m, x, lengths, exact = setting
    pyro.set_rng_seed(1)
    bound = lambda k, resample=True: repeats(  # noqa: E731
        lambda: smc_log_marginal(m, Bootstrap(m), x, k, lengths, resample=resample).sum().item(), 200 if k < 100 else 50)
    (l1, s1), (l10, s10), (l100, s100) = bound(1), bound(10), bound(100)
    assert l10 - l1 > 4 * math.hypot(s1, s10) and l100 - l10 > 4 * math.hypot(s10, s100)
    assert l100 < exact.sum().item() + 4 * s100
    iwae, s_iwae = bound(10, resample=False)
    assert l10 - iwae > 4 * math.hypot(s10, s_iwae)  # resampling: tighter than IWAE for sequences


@pytest.mark.slow
def test_fivo_in_an_svi_loop_learns_a_proposal_that_tightens_the_bound(setting):
    m, x, lengths, exact = setting
    torch.set_default_dtype(torch.float64)
    try:
        pyro.clear_param_store()
        pyro.set_rng_seed(2)
        proposal = LinearProposal(x.shape[-1], m.A.shape[0])
        m.requires_grad_(False).eval()  # the model stays the truth; only the proposal learns
        score = lambda: repeats(  # noqa: E731
            lambda: smc_log_marginal(m, proposal, x, 4, lengths).sum().item(), 100)
        before, se_before = score()
        svi = SVI(m, proposal, Adam({"lr": 0.05}), loss=FIVO(num_particles=4))
        for _ in range(150):
            svi.step(x, lengths)
        after, se_after = score()
        assert after - before > 4 * math.hypot(se_before, se_after), (before, after)
        assert after < exact.sum().item() + 4 * se_after
    finally:
        torch.set_default_dtype(torch.float32)


def test_a_whole_sequence_program_is_refused_with_one_sentence(setting):
    m, x, lengths, _ = setting
    with pytest.raises(UsageError, match="must have init\\(state, x\\) and step\\(state, x_t\\)"):
        smc_log_marginal(m.model, Bootstrap(m), x, 4, lengths)
