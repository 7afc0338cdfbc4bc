"""DRAW, the Deep Recurrent Attentive Writer (Gregor, Danihelka, Graves, Rezende & Wierstra 2015,
"DRAW: A Recurrent Neural Network For Image Generation", ICML).

Generative model, T steps (``steps``), an image of D = H·W binary pixels:

    z_t ~ N(0, I)                                   t = 1..T, each of dimension ``latent_dim``,
    h^dec_t = LSTM^dec(z_t, h^dec_{t−1}),
    c_t = c_{t−1} + write(h^dec_t),
    x | z_{1:T} ~ Π_d Bernoulli(x_d; σ(c_T)_d),

with h^dec_0 = 0 and c_0 a learned bias (initialized at zero; it learns the pixels' mean logits).

Guide, the paper's inference network (its eqs. 3–6), run forward in t alongside the decoder:

    x̂_t = x − σ(c_{t−1}),
    r_t = read(x, x̂_t, h^dec_{t−1}),
    h^enc_t = LSTM^enc([r_t, h^dec_{t−1}], h^enc_{t−1}),
    q(z_t | x, z_{<t}) = N(μ(h^enc_t), diag σ(h^enc_t)²),   σ = softplus(s(h^enc_t)) + 10⁻⁴,

then h^dec_t and c_t exactly as in the model, since the next read depends on them: the guide
and the model share the one decoder (one module, ``pyro.module("draw", ...)``). Sampling is
reparameterized.

Attention (§3.2): an N × N grid of Gaussian filters placed by a linear layer of h^dec,
(g̃_X, g̃_Y, log σ², log δ̃, log γ) = W h^dec + b, on an image of width A = W and height B = H:

    g_X = (A + 1)/2 (g̃_X + 1),   g_Y = (B + 1)/2 (g̃_Y + 1),   δ = (max(A, B) − 1)/(N − 1) δ̃,
    μ_X^i = g_X + (i − N/2 − 0.5) δ,   μ_Y^j = g_Y + (j − N/2 − 0.5) δ,   i, j = 1..N,
    F_X[i, a] = exp(−(a − μ_X^i)² / 2σ²) / Z_X^i,   F_Y[j, b] = exp(−(b − μ_Y^j)² / 2σ²) / Z_Y^j,

pixels a = 1..A, b = 1..B, and Z normalizes each filter to Σ_a F_X[i, a] = 1 (plus 10⁻⁸, so
that a filter off the image stays finite). Then

    read(x, x̂, h^dec) = γ [F_Y x F_Xᵀ, F_Y x̂ F_Xᵀ]       (two N × N glimpses, N = ``read_size``),
    write(h^dec) = (1/γ̂) F̂_Yᵀ w F̂_X,   w = W' h^dec + b'  (an N_w × N_w patch, N_w = ``write_size``),

the write with its own filter parameters (F̂, γ̂) from its own linear layer of h^dec. Without
attention (``attention=False``, the paper's first variant) read(x, x̂, h^dec) = [x, x̂] and
write(h^dec) is a linear layer of h^dec to D.

The ELBO it trains is a bound on log p(x) per image, in nats: the paper's loss L = L^x + L^z is
its negative, the reconstruction term L^x = −log p(x | z_{1:T}) plus the KL terms summed over the
T steps, L^z = Σ_t KL(q(z_t | x, z_{<t}) ‖ N(0, I)) (here estimated by Monte Carlo, as Trace_ELBO).

Sites ``z_0`` … ``z_{T−1}`` (latent) and ``x`` (observed), all inside ``pyro.plate("data")``.
The recurrence broadcasts over leading dimensions, so a vectorized particle plate works too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from .mlp import rows

MIN_SCALE = 1e-4  # q's σ floor: keeps log q(z_t) finite where softplus(s) underflows
FILTER_EPS = 1e-8  # in the filters' normalizer: a filter centred off the image has Σ_a exp(...) ≈ 0


def filterbank(g: torch.Tensor, delta: torch.Tensor, var: torch.Tensor, N: int, size: int) -> torch.Tensor:
    """The N Gaussian filters along one axis of ``size`` pixels, [..., N, size]:

        F[i, a] = exp(−(a − μ^i)² / 2σ²) / (Σ_a' exp(−(a' − μ^i)² / 2σ²) + ε),   μ^i = g + (i − N/2 − 0.5) δ,

    pixels a = 1..size and filters i = 1..N (1-based, as in the paper, so that g = (size + 1)/2 is
    the centre). ``g``, ``delta`` (δ) and ``var`` (σ²) have the same leading shape [...].
    """
    i = torch.arange(1, N + 1, dtype=g.dtype, device=g.device)
    a = torch.arange(1, size + 1, dtype=g.dtype, device=g.device)
    mu = g[..., None] + (i - N / 2 - 0.5) * delta[..., None]  # [..., N]
    kernel = torch.exp(-((a - mu[..., None]) ** 2) / (2 * var[..., None, None]))
    return kernel / (kernel.sum(-1, keepdim=True) + FILTER_EPS)


def filters(raw: torch.Tensor, height: int, width: int, N: int):
    """(F_X [..., N, W], F_Y [..., N, H], γ [...]) from the attention layer's output
    (g̃_X, g̃_Y, log σ², log δ̃, log γ) = raw [..., 5], by the paper's eqs. 21–24."""
    gx, gy, log_var, log_delta, log_gamma = raw.unbind(-1)
    gx = (width + 1) / 2 * (gx + 1)
    gy = (height + 1) / 2 * (gy + 1)
    # with a single filter the stride is moot (μ¹ = g); max(·, 1) only avoids 0/0
    delta = (max(height, width) - 1) / max(N - 1, 1) * log_delta.exp()
    var = log_var.exp()
    return filterbank(gx, delta, var, N, width), filterbank(gy, delta, var, N, height), log_gamma.exp()


def _cat(*ts: torch.Tensor) -> torch.Tensor:
    """Concatenate on the last dimension after broadcasting the leading ones (x is [B, D] while
    the recurrent state may carry a particle dimension, [K, B, ·])."""
    lead = torch.broadcast_shapes(*(t.shape[:-1] for t in ts))
    return torch.cat([t.expand(*lead, t.shape[-1]) for t in ts], dim=-1)


def _lstm(cell: nn.LSTMCell, inp: torch.Tensor, state):
    """One LSTMCell step on inputs with any leading shape: nn.LSTMCell takes [N, ·] only."""
    lead = torch.broadcast_shapes(inp.shape[:-1], state[0].shape[:-1])

    def flat(t):
        return t.expand(*lead, t.shape[-1]).reshape(-1, t.shape[-1])

    h, c = cell(flat(inp), (flat(state[0]), flat(state[1])))
    return h.reshape(*lead, -1), c.reshape(*lead, -1)


class Decoder(NamedTuple):
    """The decoder's state after step t: the LSTM's (h^dec_t, cell_t) and the canvas c_t (logits)."""

    h: torch.Tensor
    cell: torch.Tensor
    canvas: torch.Tensor


class DRAW(nn.Module):
    """DRAW's model and guide (the module docstring gives the equations): one module, so that the
    guide's decoder recurrence is the model's."""

    # What the registry's compatibility check reads (ppl_vae.registry.check):
    latent_sites = ("z_t, one per step",)
    enumerated = ()
    fit_methods = ("svi",)
    objectives = None
    continuous_data = False
    defaults = {"guide": "draw", "objective": "elbo", "binarize": "dynamic", "steps": 8}

    @classmethod
    def from_config(cls, config, data):
        p = config.pair
        hidden = list(p.hidden or [])
        return cls(tuple(data.image_shape), p.latent_dim, p.steps or cls.defaults["steps"],
                   hidden[0] if hidden else 256, attention=p.attention)

    def __init__(self, image_shape=(1, 8, 8), latent_dim: int = 10, steps: int = 8, hidden: int = 256,
                 read_size: int = 2, write_size: int = 5, attention: bool = True):
        super().__init__()
        if len(image_shape) != 3 or image_shape[0] != 1:
            raise ValueError(f"DRAW takes single-channel images (1, H, W); got image_shape {tuple(image_shape)}")
        if steps < 1:
            raise ValueError(f"DRAW needs at least one step; got steps={steps}")
        _, height, width = image_shape
        self.image_shape, self.x_dim = tuple(image_shape), height * width
        self.latent_dim, self.steps, self.hidden = latent_dim, steps, hidden
        self.read_size, self.write_size, self.attention = read_size, write_size, attention
        self.canvas0 = nn.Parameter(torch.zeros(self.x_dim))  # c_0, learned
        read_dim = 2 * read_size**2 if attention else 2 * self.x_dim
        self.encoder = nn.LSTMCell(read_dim + hidden, hidden)
        self.posterior = nn.Linear(hidden, 2 * latent_dim)  # (μ, s) of q(z_t | ·)
        self.decoder = nn.LSTMCell(latent_dim, hidden)
        if attention:
            self.read_attention = nn.Linear(hidden, 5)
            self.write_attention = nn.Linear(hidden, 5)
            self.write_patch = nn.Linear(hidden, write_size**2)
        else:
            self.write_patch = nn.Linear(hidden, self.x_dim)

    def latent_names(self) -> list[str]:
        """The latent sites, one per step: ``z_0`` … ``z_{T−1}``."""
        return [f"z_{t}" for t in range(self.steps)]

    # --- the pieces --------------------------------------------------------------------------

    def read(self, x: torch.Tensor, x_hat: torch.Tensor, h_dec: torch.Tensor) -> torch.Tensor:
        """r = γ [F_Y x F_Xᵀ, F_Y x̂ F_Xᵀ] (flattened, [..., 2N²]); [x, x̂] without attention."""
        if not self.attention:
            return _cat(x, x_hat)
        _, height, width = self.image_shape
        fx, fy, gamma = filters(self.read_attention(h_dec), height, width, self.read_size)

        def glimpse(img):
            return (fy @ img.reshape(*img.shape[:-1], height, width) @ fx.transpose(-1, -2)).flatten(-2)

        return gamma[..., None] * _cat(glimpse(x), glimpse(x_hat))

    def write(self, h_dec: torch.Tensor) -> torch.Tensor:
        """(1/γ̂) F̂_Yᵀ w F̂_X (flattened, [..., D]); a linear layer of h^dec without attention."""
        w = self.write_patch(h_dec)
        if not self.attention:
            return w
        _, height, width = self.image_shape
        fx, fy, gamma = filters(self.write_attention(h_dec), height, width, self.write_size)
        patch = w.reshape(*w.shape[:-1], self.write_size, self.write_size)
        return (fy.transpose(-1, -2) @ patch @ fx).flatten(-2) / gamma[..., None]

    def _posterior(self, x: torch.Tensor, enc, dec: Decoder):
        """The encoder's step: (h^enc_t, q(z_t | x, z_{<t})) from x and the decoder's state at t − 1."""
        x_hat = x - torch.sigmoid(dec.canvas)
        r = self.read(x, x_hat, dec.h)
        enc = _lstm(self.encoder, _cat(r, dec.h), enc)
        loc, raw_scale = self.posterior(enc[0]).chunk(2, dim=-1)
        return enc, dist.Normal(loc, F.softplus(raw_scale) + MIN_SCALE).to_event(1)

    def _unroll(self, n: int, draw: Callable, x: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The T steps, written once for the model, the guide and the figures: z_t from
        ``draw(name, distribution)``, the prior N(0, I) if ``x`` is None, else the guide's q(z_t | ·);
        then the decoder's step. Returns the canvases c_1 … c_T (logits)."""
        zeros = self.canvas0.new_zeros(n, self.hidden)
        dec, enc = Decoder(zeros, zeros, self.canvas0), (zeros, zeros)
        prior = dist.Normal(self.canvas0.new_zeros(n, self.latent_dim), 1.0).to_event(1)
        canvases = []
        for name in self.latent_names():
            if x is None:
                q = prior
            else:
                enc, q = self._posterior(x, enc, dec)
            z = draw(name, q)
            h, cell = _lstm(self.decoder, z, (dec.h, dec.cell))
            dec = Decoder(h, cell, dec.canvas + self.write(h))
            canvases.append(dec.canvas)
        return canvases

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        x = rows(x)  # data given in its own shape, e.g. [B, 1, H, W], as vectors
        if x.shape[-1] != self.x_dim:
            raise ValueError(f"DRAW was built for images of {self.x_dim} pixels; got data of shape {tuple(x.shape)}")
        return x

    # --- the Pyro programs -------------------------------------------------------------------

    def model(self, x: torch.Tensor):
        pyro.module("draw", self)
        x = self._rows(x)
        with pyro.plate("data", x.shape[0]):
            logits = self._unroll(x.shape[0], pyro.sample)[-1]
            pyro.sample("x", dist.Bernoulli(logits=logits, validate_args=False).to_event(1), obs=x)

    def guide(self, x: torch.Tensor):
        pyro.module("draw", self)
        x = self._rows(x)
        with pyro.plate("data", x.shape[0]):
            self._unroll(x.shape[0], pyro.sample, x)

    # --- figures -----------------------------------------------------------------------------

    @torch.no_grad()
    def canvases(self, x: torch.Tensor) -> torch.Tensor:
        """σ(c_t) after each step, [T, B, D], with z_t drawn from the guide: the reconstruction
        as DRAW draws it."""
        x = self._rows(x)
        return torch.sigmoid(torch.stack(self._unroll(x.shape[0], lambda name, q: q.sample(), x)))

    @torch.no_grad()
    def generate(self, n: int) -> torch.Tensor:
        """σ(c_t) after each step, [T, n, D], with z_t drawn from the prior: n new images as they are drawn."""
        return torch.sigmoid(torch.stack(self._unroll(n, lambda name, p: p.sample())))
