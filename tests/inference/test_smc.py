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

from ppl_vae import Dataset, fit
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

    def whole(x, lengths=None):  # a whole-sequence program with no step form anywhere behind it
        with pyro.plate("sequences", x.shape[0]):
            pyro.sample("x", pyro.distributions.Normal(0.0, 1.0).expand(x.shape[1:]).to_event(2), obs=x)

    with pytest.raises(UsageError, match=r"^the SMC bound resamples .* the model must be in the step form .* "
                                         r"init\(state, x\) and step\(state, x_t\)[^.]*; .*\.$"):
        smc_log_marginal(whole, Bootstrap(m), x, 4, lengths)


def test_the_step_form_is_found_behind_a_bound_method_and_unrolls_to_the_whole_model(setting):
    m, x, lengths, exact = setting
    pyro.set_rng_seed(3)
    assert torch.isfinite(smc_log_marginal(m.model, Bootstrap(m).step, x, 8, lengths)).all()
    # the model unrolled from its steps, under the exact posterior guide, has ELBO = log p(x) at every draw
    guide_tr = pyro.poutine.trace(m.exact_guide).get_trace(x, lengths)
    model_tr = pyro.poutine.trace(pyro.poutine.replay(m.model, trace=guide_tr)).get_trace(x, lengths)
    elbo = model_tr.log_prob_sum() - guide_tr.log_prob_sum()
    assert torch.allclose(elbo, exact.sum(), atol=1e-8, rtol=0)


def test_fit_trains_the_fivo_objective_and_reports_the_particle_filters_bound(setting):
    """``fit(..., "fivo")`` on a step-form pair: its test bound is the filter's estimate, below the fitted model's
    Kalman log p(x) within its Monte Carlo error, and the fitted model's likelihood rose."""
    m, x, lengths, _ = setting
    x = x.float()
    data = Dataset.from_tensors({"x": x, "lengths": lengths}, {"x": x, "lengths": lengths})
    start = {}

    def make_pair(data):
        model = lgssm_like(m)
        start["kalman"] = model.log_marginal(x, lengths).mean().item()
        return model.model, LinearProposal(x.shape[-1], m.A.shape[0])

    history = fit(make_pair, data, "fivo", particles=4, epochs=40, batch_size=6, lr=0.02, seed=0, progress=False,
                  device="cpu")
    fitted, proposal = history.model.__self__, history.guide
    with torch.no_grad():
        kalman = fitted.log_marginal(x, lengths).mean().item()
        mean, se = repeats(lambda: smc_log_marginal(fitted, proposal, x, 4, lengths).mean().item(), 50)
    assert kalman - start["kalman"] > 1.0, (start, kalman)
    assert mean < kalman + 4 * se, (mean, se, kalman)
    assert history[-1]["test_bound"] < kalman + 1.0  # one draw of the same estimate


def lgssm_like(m):
    """An LGSSM of m's sizes started elsewhere, in float32 as fit trains."""
    torch.manual_seed(5)
    return type(m)(m.C.shape[0], m.A.shape[0], init_scale=m.init_scale)


def test_fit_refuses_fivo_for_a_pair_without_step_form_before_any_work(setting):
    m, x, lengths, _ = setting
    data = Dataset.from_tensors({"x": x.float(), "lengths": lengths})
    loc = torch.nn.Parameter(torch.zeros(3))

    def model(x, lengths=None):  # a whole-sequence pair with no step form behind it
        pyro.param("loc", loc)
        with pyro.plate("sequences", x.shape[0]):
            z = pyro.sample("z", pyro.distributions.Normal(0.0, 1.0).expand([3]).to_event(1))
            pyro.sample("x", pyro.distributions.Normal(z[..., None, :].expand(*z.shape[:-1], *x.shape[1:]), 1.0)
                        .to_event(2), obs=x)

    def guide(x, lengths=None):
        with pyro.plate("sequences", x.shape[0]):
            pyro.sample("z", pyro.distributions.Normal(pyro.param("loc", loc), 1.0).to_event(1))

    def make_pair(data):
        return model, guide

    with pytest.raises(UsageError, match="^the fivo objective resamples .* the model must be in the step form"):
        fit(make_pair, data, "fivo", particles=2, epochs=1, batch_size=6, progress=False, device="cpu")
