"""Attend, Infer, Repeat (AIR; Eslami et al. 2016): a scene as a variable number of objects, each drawn by
one shared decoder into a window that a spatial transformer (Jaderberg et al. 2015) places on the canvas.

The model, for steps t = 0, ..., T − 1, with z_pres_{−1} = 1:

    z_pres_t  ~ Bernoulli(ρ · z_pres_{t−1})                 an object is present (once absent, all later are)
    z_where_t ~ N(μ_where, diag σ_where²)                   the window's scale and shift, (s, x, y)
    z_what_t  ~ N(0, I)                                     the object's appearance
    x | z     ~ N(Σ_t z_pres_t · ST(g_θ(z_what_t), z_where_t), σ_x² I),

z_where_t and z_what_t masked by z_pres_t: an absent object's terms drop out of log p (and of log q), so
the number of objects n = Σ_t z_pres_t is itself a latent variable. g_θ, an MLP with a sigmoid output,
draws a window × window object in [0, 1]; ST places it (:func:`place`).

The guide attends to one object per step with a recurrent network,

    h_t = LSTM(h_{t−1}, [x, z_where_{t−1}, z_what_{t−1}, z_pres_{t−1}])
    z_pres_t  ~ Bernoulli(z_pres_{t−1} · σ(f_φ(h_t)))
    z_where_t ~ N(μ_where + a_φ(h_t), σ_where ⊙ softplus(b_φ(h_t)))    centred on the prior at a_φ = 0
    z_what_t  ~ N(e_φ(ST⁻¹(x, z_where_t)))                              the encoder sees only the window

(:func:`crop` is ST⁻¹). z_where and z_what are reparameterized; z_pres is discrete, so its gradient is
the score function's, as Pyro's ``TraceGraph_ELBO`` estimates it, with the learned baseline of the AIR
paper (after Mnih & Gregor 2014): a second LSTM b_ψ on the same inputs predicts step t's downstream cost,
declared in the guide as ``infer={"baseline": {"baseline_value": b_t}}``, and ``TraceGraph_ELBO`` trains
it on (cost − b_t)². Its parameters are registered apart, as ``air_baseline``, the networks of the model
and the guide as ``air``: an optimizer can give the baseline its own rate.

Spatial transformer convention (``F.affine_grid`` / ``F.grid_sample``, ``align_corners=False``: −1 and 1
are the outer edges of the first and last pixels): the canvas point u samples the window at s·u + (x, y),
so the window lands centred at −(x, y)/s with side 2/|s| in those units, canvas/|s| pixels. s = canvas /
window shows an object at its own pixel size; the prior's mean is (canvas / window, 0, 0), Pyro's
(3, 0, 0) at the defaults. :meth:`AIR.boxes` turns z_where into pixel boxes.

Sites: ``z_pres_{t}`` [B], ``z_where_{t}`` [B, 3], ``z_what_{t}`` [B, z_what_dim] and ``x`` [B, canvas²],
all inside ``pyro.plate("data", B)``. The programs take x [B, canvas²] (or [B, 1, canvas, canvas]) and
no particle dimension.
"""

from __future__ import annotations

from collections import namedtuple

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from ppl_vae.errors import UsageError

from .mlp import GaussianNet, loc_and_scale, mlp, rows

MAX_STEPS = 2  # the default T, which the class's latent_sites name
BASELINES = ("neural", "average", "none")  # z_pres's score-function baseline (AIR.__init__)


def step_sites(steps: int) -> tuple[str, ...]:
    """The latent sites of a T-step AIR, in the order the programs sample them."""
    return tuple(f"z_{kind}_{t}" for t in range(steps) for kind in ("pres", "where", "what"))


def _affine(z_where: torch.Tensor) -> torch.Tensor:
    """(s, x, y) [N, 3] -> the spatial transformer's matrices [[s, 0, x], [0, s, y]], [N, 2, 3]."""
    s, x, y = z_where.unbind(-1)
    zero = torch.zeros_like(s)
    return torch.stack([torch.stack([s, zero, x], -1), torch.stack([zero, s, y], -1)], -2)


def _inverse(z_where: torch.Tensor) -> torch.Tensor:
    """The (s, x, y) of the inverse map: u -> s·u + x is undone by w -> w / s − x / s."""
    s, shift = z_where[..., :1], z_where[..., 1:]
    return torch.cat([1 / s, -shift / s], -1)


def place(objects: torch.Tensor, z_where: torch.Tensor, canvas: int) -> torch.Tensor:
    """ST: windows [N, w, w] drawn on empty canvases [N, canvas, canvas] where z_where [N, 3] puts them."""
    n, w = objects.shape[0], objects.shape[-1]
    grid = F.affine_grid(_affine(z_where), [n, 1, canvas, canvas], align_corners=False)
    return F.grid_sample(objects.reshape(n, 1, w, w), grid, align_corners=False).reshape(n, canvas, canvas)


def crop(images: torch.Tensor, z_where: torch.Tensor, canvas: int, window: int) -> torch.Tensor:
    """ST⁻¹: the windows [N, window, window] that z_where [N, 3] reads from images [N, canvas²]."""
    n = images.shape[0]
    grid = F.affine_grid(_affine(_inverse(z_where)), [n, 1, window, window], align_corners=False)
    return F.grid_sample(images.reshape(n, 1, canvas, canvas), grid, align_corners=False).reshape(n, window, window)


# what the guide carries from one step to the next: the LSTM's memory and the last step's latents
State = namedtuple("State", ["h", "c", "z_pres", "z_where", "z_what"])


# how AIR.attend draws a site: in the guide, out of it (infer_scene), or at q's mode
def _sample(name, fn, infer=None):
    return pyro.sample(name, fn, infer=infer or {})


def _draw(name, fn, infer=None):
    return fn.sample()


def _mode(name, fn, infer=None):
    """z_pres = 1 where q's probability exceeds 1/2; z_where and z_what q's means (a Gaussian's mode)."""
    if isinstance(fn, dist.Bernoulli):
        return (fn.probs > 0.5).to(fn.probs.dtype)
    return fn.mean


class Baseline(nn.Module):
    """b_ψ(x, z_<t): the downstream cost of z_pres_t that an LSTM expects, the score function's baseline."""

    def __init__(self, inputs: int, hidden: int):
        super().__init__()
        self.rnn = nn.LSTMCell(inputs, hidden)
        self.out = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor, prev: State, memory=None):
        """(b_t [B], the LSTM's memory); ``prev`` is the guide's state before step t."""
        # detached: the baseline learns from (cost − b)² alone, without moving the guide's samples
        inputs = torch.cat([x, prev.z_where.detach(), prev.z_what.detach(), prev.z_pres.detach()[:, None]], -1)
        h, c = self.rnn(inputs, memory)
        # where z_pres_{t−1} = 0, z_pres_t = 0 surely and has no score term: nothing for b to fit there
        return self.out(h).squeeze(-1) * prev.z_pres, (h, c)


class AIR(nn.Module):
    # What the registry's compatibility check reads (ppl_vae.registry.check):
    latent_sites = step_sites(MAX_STEPS)  # for the default max_steps, the one from_config builds
    enumerated = ()
    fit_methods = ("svi",)
    # the estimators of the ELBO's gradient that use the guide's declared baseline for z_pres
    # (elbo trains TraceGraph_ELBO once a guide declares one); the importance-weighted ones need
    # reparameterized samples, and z_pres has none; vimco, the score function for every site with a
    # leave-one-out baseline per particle, needs none
    objectives = ("elbo", "score", "score-avg", "score-nn", "vimco")
    continuous_data = True  # a Gaussian density of grey levels
    defaults = {"guide": "air", "objective": "elbo", "binarize": "none", "steps": MAX_STEPS}

    @classmethod
    def from_config(cls, config, data):
        channels, height, width = data.image_shape
        if channels != 1 or height != width:
            raise UsageError(f"AIR draws on square grey canvases, and the {data.name} images are "
                             f"{channels} × {height} × {width}; use square grey images.")
        p = config.pair
        return cls(canvas=height, max_steps=p.steps or MAX_STEPS, hidden=p.hidden[0] if p.hidden else 256,
                   z_what_dim=p.latent_dim, z_pres_prior=p.z_pres_prior, baseline=p.z_pres_baseline)

    def __init__(self, canvas: int = 24, window: int = 8, max_steps: int = MAX_STEPS, z_what_dim: int = 20,
                 hidden: int = 256, z_pres_prior: float = 0.5, likelihood_scale: float = 0.3,
                 baseline: str = "neural"):
        """``baseline``: z_pres's score-function baseline, declared in the guide for ``TraceGraph_ELBO``:
        ``neural`` (the paper's b_ψ), ``average`` (Pyro's decaying average of the cost) or ``none``
        (then ``elbo`` trains Pyro's ``Trace_ELBO``, the score function with the whole cost)."""
        super().__init__()
        if baseline not in BASELINES:
            raise ValueError(f"unknown z_pres baseline {baseline!r}; choose one of {', '.join(BASELINES)}")
        self.baseline_kind = baseline
        self.canvas, self.window, self.max_steps, self.z_what_dim = canvas, window, max_steps, z_what_dim
        self.latent_sites = step_sites(max_steps)
        self.z_pres_prior, self.likelihood_scale = z_pres_prior, likelihood_scale
        # μ_where and σ_where of (s, x, y): Python numbers, exact in any dtype the module is used in
        self.where_loc, self.where_scale = (canvas / window, 0.0, 0.0), (0.2, 1.0, 1.0)
        inputs = canvas ** 2 + 3 + z_what_dim + 1  # [x, z_where, z_what, z_pres] of the step before
        # two groups, so that Pyro's store holds each parameter under one name: the programs register
        # the networks as "air", the guide the baseline as "air_baseline"; both move and save with the module
        self.nets = nn.ModuleDict({
            "decoder": mlp([z_what_dim, hidden, window ** 2]),  # g_θ, logits of the object's pixels
            "rnn": nn.LSTMCell(inputs, hidden),
            "head": nn.Linear(hidden, 1 + 2 * 3),  # f_φ, a_φ, b_φ
            "encoder": GaussianNet(window ** 2, z_what_dim, (hidden,)),  # e_φ
        })
        self.baseline = Baseline(inputs, hidden)

    # --- the pieces both programs are made of -------------------------------------------------------------

    def where_prior(self, like: torch.Tensor) -> dist.Distribution:
        """p(z_where) = N(μ_where, diag σ_where²), one per row of ``like``, in its dtype and on its device."""
        loc, scale = (torch.stack([like.new_full(like.shape[:1], v) for v in values], -1)
                      for values in (self.where_loc, self.where_scale))
        return dist.Normal(loc, scale).to_event(1)

    def decode(self, z_what: torch.Tensor) -> torch.Tensor:
        """g_θ(z_what): objects [N, window, window] in [0, 1]."""
        return torch.sigmoid(self.nets["decoder"](z_what)).reshape(-1, self.window, self.window)

    def render(self, z_pres: torch.Tensor, z_where: torch.Tensor, z_what: torch.Tensor) -> torch.Tensor:
        """The model's mean image Σ_t z_pres_t · ST(g_θ(z_what_t), z_where_t), [B, canvas²], of latents
        [B, T], [B, T, 3], [B, T, z_what_dim] (e.g. :meth:`infer_scene`'s, to draw reconstructions)."""
        b, t = z_pres.shape
        objects = place(self.decode(z_what.reshape(b * t, -1)), z_where.reshape(b * t, 3), self.canvas)
        return (z_pres[..., None] * objects.reshape(b, t, -1)).sum(1)

    def start(self, x: torch.Tensor) -> State:
        """The guide's state before step 0: empty memory, z_pres_{−1} = 1, zero z_where and z_what."""
        n, hidden = x.shape[0], self.nets["rnn"].hidden_size
        return State(x.new_zeros(n, hidden), x.new_zeros(n, hidden), x.new_ones(n), x.new_zeros(n, 3),
                     x.new_zeros(n, self.z_what_dim))

    def attend(self, t: int, x: torch.Tensor, prev: State, draw=_sample, infer=None) -> State:
        """The guide's step t: q(z_pres_t, z_where_t, z_what_t | x, z_<t), each drawn by
        ``draw(name, q, infer)`` (``pyro.sample`` in the guide); ``infer``: z_pres_t's."""
        inputs = torch.cat([x, prev.z_where, prev.z_what, prev.z_pres[:, None]], -1)
        h, c = self.nets["rnn"](inputs, (prev.h, prev.c))
        out = self.nets["head"](h)
        z_pres = draw(f"z_pres_{t}", dist.Bernoulli(prev.z_pres * torch.sigmoid(out[:, 0])), infer)
        present = z_pres.bool()
        shift, scale = loc_and_scale(out[:, 1:])
        prior = self.where_prior(x).base_dist
        where = dist.Normal(prior.loc + shift, prior.scale * scale).to_event(1)
        z_where = draw(f"z_where_{t}", where.mask(present))
        loc, scale = self.nets["encoder"](crop(x, z_where, self.canvas, self.window).reshape(x.shape[0], -1))
        z_what = draw(f"z_what_{t}", dist.Normal(loc, scale).to_event(1).mask(present))
        return State(h, c, z_pres, z_where, z_what)

    # --- the programs -------------------------------------------------------------------------------------

    def model(self, x: torch.Tensor, idx=None):
        pyro.module("air", self.nets)
        x = rows(x)
        n = x.shape[0]
        with pyro.plate("data", n):
            z_pres, latents = x.new_ones(n), []
            for t in range(self.max_steps):
                z_pres = pyro.sample(f"z_pres_{t}", dist.Bernoulli(self.z_pres_prior * z_pres))
                present = z_pres.bool()
                z_where = pyro.sample(f"z_where_{t}", self.where_prior(x).mask(present))
                z_what = pyro.sample(f"z_what_{t}", dist.Normal(x.new_zeros(n, self.z_what_dim), 1.0)
                                     .to_event(1).mask(present))
                latents.append((z_pres, z_where, z_what))
            z_pres, z_where, z_what = (torch.stack(z, 1) for z in zip(*latents))
            pyro.sample("x", dist.Normal(self.render(z_pres, z_where, z_what), self.likelihood_scale).to_event(1),
                        obs=x)

    def guide(self, x: torch.Tensor, idx=None):
        pyro.module("air", self.nets)
        neural = self.baseline_kind == "neural"
        if neural:
            pyro.module("air_baseline", self.baseline)
        x = rows(x)
        with pyro.plate("data", x.shape[0]):
            state, memory = self.start(x), None
            for t in range(self.max_steps):
                if neural:
                    b, memory = self.baseline(x, state, memory)
                    infer = {"baseline": {"baseline_value": b}}
                else:
                    infer = {"baseline": {"use_decaying_avg_baseline": True}} if self.baseline_kind == "average" \
                        else None
                state = self.attend(t, x, state, infer=infer)

    # --- evaluation and figures ---------------------------------------------------------------------------

    @torch.no_grad()
    def infer_scene(self, x: torch.Tensor, mode: bool = True) -> dict[str, torch.Tensor]:
        """One pass of the guide: {"z_pres": [B, T], "z_where": [B, T, 3], "z_what": [B, T, z_what_dim]}.

        ``mode=True`` (the default) is deterministic: step by step, z_pres_t = 1 where q's probability
        σ(f_φ(h_t)) exceeds 1/2 (and z_pres_{t−1} = 1), z_where_t and z_what_t q's means, each step
        conditioned on the ones before (a greedy mode, not the joint one). ``mode=False``: one draw from q.
        """
        x = rows(x)
        state, steps = self.start(x), []
        for t in range(self.max_steps):
            state = self.attend(t, x, state, _mode if mode else _draw)
            steps.append(state)
        return {key: torch.stack([getattr(s, key) for s in steps], 1) for key in ("z_pres", "z_where", "z_what")}

    def count_accuracy(self, x: torch.Tensor, counts: torch.Tensor) -> float:
        """The share of scenes whose inferred count Σ_t z_pres_t (:meth:`infer_scene`, mode) is ``counts``."""
        inferred = self.infer_scene(x, mode=True)["z_pres"].sum(-1)
        return (inferred == counts.to(inferred)).to(torch.float64).mean().item()

    def boxes(self, z_where: torch.Tensor) -> torch.Tensor:
        """The windows z_where [..., 3] places, as pixel boxes (x0, y0, w, h) [..., 4]: x0 the column and y0
        the row of the top-left corner, in pixel-edge coordinates (pixel i spans [i, i + 1)), w = h =
        canvas / |s| — the convention of :func:`ppl_vae.scenes.multi_digit_scenes`' boxes.

        The window's centre is −(x, y)/s in the transformer's coordinates, where [−1, 1] spans the canvas's
        outer edges, i.e. canvas/2 · (1 − (x, y)/s) pixels from the top-left corner."""
        s, shift = z_where[..., :1], z_where[..., 1:]
        side = self.canvas / s.abs()
        corner = self.canvas / 2 * (1 - shift / s) - side / 2
        return torch.cat([corner, side, side], -1)
