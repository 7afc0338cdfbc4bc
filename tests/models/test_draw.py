"""DRAW: the filterbank, the sites and shapes, the ELBO against a hand computation, training, registration."""

import math

import pyro
import pytest
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam
from pyro.poutine.util import site_is_subsample

from ppl_vae.models.draw import DRAW, MIN_SCALE, filterbank, filters

LOG_2PI = math.log(2 * math.pi)


def binary_images(n, shape=(8, 8), seed=0, dtype=torch.float64):
    """n binary images [n, H·W]: one of three fixed prototypes (a bar, a column, a box) with 5% of pixels flipped."""
    h, w = shape
    protos = torch.zeros(3, h, w, dtype=dtype)
    protos[0, h // 2 - 1: h // 2 + 1, 1:-1] = 1
    protos[1, 1:-1, w // 2 - 1: w // 2 + 1] = 1
    protos[2, 1:-1, 1] = protos[2, 1:-1, -2] = protos[2, 1, 1:-1] = protos[2, -2, 1:-1] = 1
    g = torch.Generator().manual_seed(seed)
    x = protos[torch.randint(3, (n,), generator=g)].reshape(n, -1)
    flip = (torch.rand(x.shape, generator=g) < 0.05).to(dtype)
    return (x + flip) % 2


def small(attention=True, steps=3, **kw):
    torch.manual_seed(0)
    return DRAW((1, 8, 8), latent_dim=4, steps=steps, hidden=16, attention=attention, **kw).double()


# --- the filterbank ---------------------------------------------------------------------------

def test_filterbank_rows_sum_to_one():
    g = torch.tensor([3.0, 5.5, 6.2], dtype=torch.float64)
    delta = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)
    var = torch.tensor([0.5, 0.64, 3.0], dtype=torch.float64)
    fb = filterbank(g, delta, var, 4, 10)
    assert fb.shape == (3, 4, 10)
    assert (fb >= 0).all()
    torch.testing.assert_close(fb.sum(-1), torch.ones(3, 4, dtype=torch.float64), atol=1e-6, rtol=0)
    # the filters are centred where the paper puts them: μ^i = g + (i − N/2 − 0.5) δ, pixels 1-based
    centres = (fb * torch.arange(1, 11, dtype=torch.float64)).sum(-1)
    expected = g[:, None] + (torch.arange(1, 5, dtype=torch.float64) - 2.5) * delta[:, None]
    torch.testing.assert_close(centres[1], expected[1], atol=1e-3, rtol=0)  # the filters well inside the image


def test_filterbank_identity_reproduces_the_image():
    """N = size, δ = 1, centre at the image's centre, tiny σ²: F_Y x F_Xᵀ = x."""
    size = 8
    g = torch.tensor([(size + 1) / 2], dtype=torch.float64)
    one = torch.ones(1, dtype=torch.float64)
    fb = filterbank(g, one, 1e-6 * one, size, size)[0]
    x = torch.rand(size, size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(fb @ x @ fb.T, x, atol=1e-6, rtol=0)
    # the same through the attention layer's parameterization: g̃ = 0, δ̃ = (N − 1)/(size − 1) = 1, γ = 1
    raw = torch.tensor([[0.0, 0.0, -30.0, 0.0, 0.0]], dtype=torch.float64)
    fx, fy, gamma = filters(raw, size, size, size)
    torch.testing.assert_close(fy[0] @ x @ fx[0].T, x, atol=1e-6, rtol=0)
    assert gamma.item() == 1.0


def test_read_with_identity_filters_returns_x_and_x_hat():
    m = small(read_size=8)
    with torch.no_grad():
        m.read_attention.weight.zero_()
        m.read_attention.bias.copy_(torch.tensor([0.0, 0.0, -30.0, 0.0, math.log(2.0)]))
    x, x_hat = binary_images(3), torch.rand(3, 64, dtype=torch.float64)
    r = m.read(x, x_hat, torch.zeros(3, 16, dtype=torch.float64))
    torch.testing.assert_close(r, 2 * torch.cat([x, x_hat], -1), atol=1e-6, rtol=0)
    # g_X one pixel right of the centre (g̃_X = 2/(W + 1)): the glimpse is x moved one column left
    with torch.no_grad():
        m.read_attention.bias[0] = 2 / 9
    glimpse = m.read(x, x_hat, torch.zeros(3, 16, dtype=torch.float64))[:, :64].reshape(3, 8, 8)
    torch.testing.assert_close(glimpse[:, :, :7], 2 * x.reshape(3, 8, 8)[:, :, 1:], atol=1e-6, rtol=0)
    assert glimpse[:, :, 7].abs().max() < 1e-6  # the last filters lie off the image


def test_write_with_identity_filters_pastes_the_patch():
    """N_w = size, δ = 1, centred, tiny σ², γ̂ = 2: write(h) = w / 2, the patch in place."""
    m = small(write_size=8)
    with torch.no_grad():
        m.write_attention.weight.zero_()
        m.write_attention.bias.copy_(torch.tensor([0.0, 0.0, -30.0, 0.0, math.log(2.0)]))
    h = torch.randn(3, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(m.write(h), m.write_patch(h) / 2, atol=1e-6, rtol=0)


# --- sites and shapes -------------------------------------------------------------------------

@pytest.mark.parametrize("attention", [True, False])
def test_sites_and_shapes(attention):
    m, B = small(attention), 5
    x = binary_images(B)
    guide_tr = poutine.trace(m.guide).get_trace(x)
    model_tr = poutine.trace(poutine.replay(m.model, trace=guide_tr)).get_trace(x.reshape(B, 1, 8, 8))
    names = m.latent_names()
    assert names == ["z_0", "z_1", "z_2"]
    for tr in (guide_tr, model_tr):
        latents = [n for n, s in tr.nodes.items() if s["type"] == "sample" and not s["is_observed"]
                   and not site_is_subsample(s)]  # the plate's own site aside
        assert latents == names
        for n in names:
            assert tr.nodes[n]["value"].shape == (B, 4)
    assert model_tr.nodes["x"]["is_observed"] and model_tr.nodes["x"]["value"].shape == (B, 64)
    for out in (m.canvases(x), m.generate(B)):
        assert out.shape == (3, B, 64)
        assert ((out > 0) & (out < 1)).all()


def test_only_single_channel_images():
    with pytest.raises(ValueError, match="single-channel"):
        DRAW((3, 8, 8))
    with pytest.raises(ValueError, match="64 pixels"):
        pyro.poutine.trace(small().guide).get_trace(torch.zeros(2, 49, dtype=torch.float64))


# --- the ELBO against a hand computation --------------------------------------------------------

def log_weight_by_hand(m, x, zs):
    """log p(x, z) − log q(z | x) per image, from the module's pieces with the recurrence written out."""
    B = x.shape[0]
    h = cell = h_enc = cell_enc = torch.zeros(B, m.hidden, dtype=x.dtype)
    canvas = m.canvas0
    log_p = log_q = torch.zeros(B, dtype=x.dtype)
    for z in zs:
        r = m.read(x, x - torch.sigmoid(canvas), h)
        h_enc, cell_enc = m.encoder(torch.cat([r, h], -1), (h_enc, cell_enc))
        loc, s = m.posterior(h_enc).chunk(2, -1)
        scale = F.softplus(s) + MIN_SCALE
        log_q = log_q + (-0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * LOG_2PI).sum(-1)
        log_p = log_p + (-0.5 * z**2 - 0.5 * LOG_2PI).sum(-1)
        h, cell = m.decoder(z, (h, cell))
        canvas = canvas + m.write(h)
    log_p = log_p + (x * canvas - F.softplus(canvas)).sum(-1)
    return log_p - log_q


def log_weight_from_traces(m, x):
    guide_tr = poutine.trace(m.guide).get_trace(x)
    model_tr = poutine.trace(poutine.replay(m.model, trace=guide_tr)).get_trace(x)
    guide_tr.compute_log_prob()
    model_tr.compute_log_prob()
    names = m.latent_names()
    log_w = sum(model_tr.nodes[n]["log_prob"] for n in [*names, "x"]) - sum(guide_tr.nodes[n]["log_prob"] for n in names)
    return log_w, [guide_tr.nodes[n]["value"] for n in m.latent_names()]


@pytest.mark.parametrize("attention", [True, False])
def test_elbo_matches_hand_computation(attention):
    m = small(attention)
    x = binary_images(6)
    pyro.set_rng_seed(3)
    log_w, zs = log_weight_from_traces(m, x)
    assert log_w.shape == (6,)
    torch.testing.assert_close(log_w, log_weight_by_hand(m, x, zs), atol=1e-9, rtol=0)


@pytest.mark.parametrize("attention", [True, False])
def test_vectorized_particles_match_one_at_a_time(attention):
    """Under a particle plate the recurrence broadcasts: each particle's log weight is the hand computation's."""
    m, K = small(attention), 3
    x = binary_images(4)
    with pyro.plate("particles", K, dim=-2):
        log_w, zs = log_weight_from_traces(m, x)
    assert log_w.shape == (K, 4) and zs[0].shape == (K, 4, 4)
    for k in range(K):
        torch.testing.assert_close(log_w[k], log_weight_by_hand(m, x, [z[k] for z in zs]), atol=1e-9, rtol=0)


# --- training -----------------------------------------------------------------------------------

def elbo_estimate(m, x, particles=10, seed=1):
    """The mean ELBO per image over ``particles`` draws, and its Monte Carlo standard error."""
    pyro.set_rng_seed(seed)
    loss = Trace_ELBO()
    with torch.no_grad():
        draws = torch.tensor([-loss.loss(m.model, m.guide, x) / x.shape[0] for _ in range(particles)])
    return draws.mean().item(), draws.std().item() / math.sqrt(particles)


@pytest.mark.slow  # about 6 s (attention) and 2 s single-threaded
@pytest.mark.parametrize("attention", [True, False])
def test_training_raises_the_elbo(attention):
    m = small(attention, steps=4).float()
    x = binary_images(256, dtype=torch.float32)
    before, se_before = elbo_estimate(m, x)
    pyro.set_rng_seed(0)
    svi = SVI(m.model, m.guide, Adam({"lr": 1e-2}), Trace_ELBO())
    for _ in range(150):
        svi.step(x)
    after, se_after = elbo_estimate(m, x)
    margin = 5 * math.hypot(se_before, se_after)
    assert after - before > margin, (before, after, margin)
    if not attention:
        # it has found the prototypes: better than independent pixels at their marginal frequencies
        # (≈ −27 nats here; the noise alone costs 64 H(0.05) + log 3 ≈ 13.8)
        p = x.mean(0)
        independent = (x * p.log() + (1 - x) * (1 - p).log()).sum(-1).mean().item()
        assert after > independent + 5, (after, independent)


# --- registration -------------------------------------------------------------------------------

def test_model_and_guide_register_the_same_parameters():
    m = small()
    x = binary_images(2)
    expected = {f"draw$$${name}" for name, _ in m.named_parameters()}
    store = pyro.get_param_store()
    poutine.trace(m.guide).get_trace(x)
    from_guide = set(store.keys())
    pyro.clear_param_store()
    poutine.trace(m.model).get_trace(x)
    from_model = set(store.keys())
    pyro.clear_param_store()
    poutine.trace(m.guide).get_trace(x)
    poutine.trace(m.model).get_trace(x)
    assert from_guide == from_model == set(store.keys()) == expected


@pytest.mark.slow
def test_draw_trains_from_the_command_line_with_its_own_guide_and_reports_its_canvas(tmp_path, capsys):
    from helpers import run_cli
    from ppl_vae.run import load

    out = tmp_path / "draw"
    code, printed, err = run_cli(["train", "--model", "draw", "--steps", "3", "--latent-dim", "2", "--hidden", "16",
                                  "--no-attention", "--epochs", "1", "--no-progress", "--out", out], capsys)
    assert code == 0 and "test bound" in printed, err
    run = load(str(out))
    assert run.guide.__self__ is run.model  # the guide reads the canvas the model's decoder writes
    assert run.model.steps == 3 and run.model.attention is False
    assert run_cli(["report", out], capsys)[0] == 0
    assert (out / "figures" / "canvas.png").stat().st_size > 5_000
