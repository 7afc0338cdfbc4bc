"""Attend-Infer-Repeat (Eslami et al. 2016) written the way Pyro's ``examples/air`` writes it, trained
by ppl-vae as it stands, on canvases of 0–2 bundled digits:

    for t < T:  z_pres_t ~ Bernoulli(p_t z_pres_{t−1}),  z_where_t, z_what_t ~ N (masked by z_pres_t),
                x += z_pres_t · ST(decode(z_what_t), z_where_t),        x_obs ~ N(x, σ²),

with a recurrent guide that attends to each object through the inverse spatial transformer. The
constructs are the example's: the signature ``model(data, batch_size, **kwargs)`` with a guide
that subsamples the data itself (``pyro.plate("data", N, subsample_size=batch_size)``) and a model
plate that replays its indices, modules registered one by one in the guide, discrete z_pres with
a learned baseline declared in the guide (``infer=dict(baseline=dict(baseline_value=...))``: ``elbo``
trains Pyro's ``TraceGraph_ELBO`` with it), masks, and the prior's z_pres probability annealed by
optimization step through ``z_pres_prior_p``, a per-step input (``Pair(step_inputs=...)``). Its
shapes follow the batch, not a particle dimension, so particles are drawn one pass each.

    python scripts/examples/air.py --epochs 200
"""

from __future__ import annotations

import argparse
import functools
from collections import namedtuple

import pyro
import pyro.distributions as dist
import torch
import torch.nn as nn
import torch.nn.functional as F

from ppl_vae import Dataset, Pair, fit
from ppl_vae import data as datasets

ModelState = namedtuple("ModelState", ["x", "z_pres", "z_where"])
GuideState = namedtuple("GuideState", ["h", "c", "bl_h", "bl_c", "z_pres", "z_where", "z_what"])
CANVAS, WINDOW, STEPS, BATCH = 16, 8, 2, 32


def default_z_pres_prior_p(t):
    return 0.5


def expand_z_where(z_where):
    """[s, x, y] -> the affine map [[s, 0, x], [0, s, y]] of a spatial transformer."""
    s, xy = z_where[:, :1], z_where[:, 1:]
    zeros = torch.zeros_like(s)
    return torch.stack([torch.cat([s, zeros, xy[:, :1]], 1), torch.cat([zeros, s, xy[:, 1:]], 1)], 1)


def z_where_inv(z_where):
    s = z_where[:, :1]
    return torch.cat([1 / s, -z_where[:, 1:] / s], 1)


def window_to_image(z_where, window_size, image_size, windows):
    n = windows.size(0)
    grid = F.affine_grid(expand_z_where(z_where), [n, 1, image_size, image_size], align_corners=False)
    out = F.grid_sample(windows.view(n, 1, window_size, window_size), grid, align_corners=False)
    return out.view(n, image_size, image_size)


def image_to_window(z_where, window_size, image_size, images):
    n = images.size(0)
    grid = F.affine_grid(expand_z_where(z_where_inv(z_where)), [n, 1, window_size, window_size], align_corners=False)
    return F.grid_sample(images.view(n, 1, image_size, image_size), grid, align_corners=False).view(n, -1)


class AIR(nn.Module):
    def __init__(self, num_steps=STEPS, x_size=CANVAS, window_size=WINDOW, z_what_size=10, rnn_hidden_size=64,
                 scale_prior_mean=2.0, scale_prior_sd=0.1, pos_prior_mean=0.0, pos_prior_sd=1.0, likelihood_sd=0.3):
        super().__init__()
        self.num_steps, self.x_size, self.window_size = num_steps, x_size, window_size
        self.z_what_size, self.likelihood_sd = z_what_size, likelihood_sd
        self.z_pres_size, self.z_where_size = 1, 3
        self.z_where_loc_prior = nn.Parameter(torch.tensor([scale_prior_mean, pos_prior_mean, pos_prior_mean]),
                                              requires_grad=False)
        self.z_where_scale_prior = nn.Parameter(torch.tensor([scale_prior_sd, pos_prior_sd, pos_prior_sd]),
                                                requires_grad=False)
        rnn_input_size = x_size ** 2 + self.z_where_size + z_what_size + self.z_pres_size
        self.rnn = nn.LSTMCell(rnn_input_size, rnn_hidden_size)
        self.encode = nn.Sequential(nn.Linear(window_size ** 2, 64), nn.ReLU(), nn.Linear(64, 2 * z_what_size))
        self.decode = nn.Sequential(nn.Linear(z_what_size, 64), nn.ReLU(), nn.Linear(64, window_size ** 2),
                                    nn.Sigmoid())
        self.predict = nn.Linear(rnn_hidden_size, self.z_pres_size + 2 * self.z_where_size)
        self.embed = nn.Identity()
        self.bl_rnn = nn.LSTMCell(rnn_input_size, rnn_hidden_size)
        self.bl_predict = nn.Linear(rnn_hidden_size, 1)
        self.bl_embed = nn.Identity()
        self.h_init = nn.Parameter(torch.zeros(1, rnn_hidden_size))
        self.c_init = nn.Parameter(torch.zeros(1, rnn_hidden_size))
        self.bl_h_init = nn.Parameter(torch.zeros(1, rnn_hidden_size))
        self.bl_c_init = nn.Parameter(torch.zeros(1, rnn_hidden_size))
        self.z_where_init = nn.Parameter(torch.zeros(1, self.z_where_size))
        self.z_what_init = nn.Parameter(torch.zeros(1, z_what_size))

    def prior(self, n, **kwargs):
        state = ModelState(x=torch.zeros(n, self.x_size, self.x_size), z_pres=torch.ones(n, self.z_pres_size),
                           z_where=None)
        for t in range(self.num_steps):
            state = self.prior_step(t, n, state, **kwargs)
        return state.x

    def prior_step(self, t, n, prev, z_pres_prior_p=default_z_pres_prior_p):
        z_pres = pyro.sample(f"z_pres_{t}", dist.Bernoulli(z_pres_prior_p(t) * prev.z_pres).to_event(1))
        z_where = pyro.sample(f"z_where_{t}", dist.Normal(self.z_where_loc_prior.expand(n, self.z_where_size),
                                                          self.z_where_scale_prior.expand(n, self.z_where_size))
                              .mask(z_pres).to_event(1))
        z_what = pyro.sample(f"z_what_{t}", dist.Normal(torch.zeros(n, self.z_what_size),
                                                        torch.ones(n, self.z_what_size)).mask(z_pres).to_event(1))
        y = window_to_image(z_where, self.window_size, self.x_size, self.decode(z_what))
        return ModelState(x=prev.x + y * z_pres.view(-1, 1, 1), z_pres=z_pres, z_where=z_where)

    def model(self, data, batch_size, **kwargs):
        pyro.module("decode", self.decode)
        with pyro.plate("data", data.size(0)) as ix:
            batch = data[ix]
            n = batch.size(0)
            x = self.prior(n, **kwargs)
            pyro.sample("obs", dist.Normal(x.view(n, -1), self.likelihood_sd * torch.ones(n, self.x_size ** 2))
                        .to_event(1), obs=batch.view(n, -1))

    def guide(self, data, batch_size, **kwargs):
        pyro.module("rnn", self.rnn)
        pyro.module("predict", self.predict)
        pyro.module("encode", self.encode)
        pyro.module("embed", self.embed)
        pyro.module("bl_rnn", self.bl_rnn)
        pyro.module("bl_predict", self.bl_predict)
        pyro.module("bl_embed", self.bl_embed)
        pyro.param("h_init", self.h_init)
        pyro.param("c_init", self.c_init)
        pyro.param("z_where_init", self.z_where_init)
        pyro.param("z_what_init", self.z_what_init)
        pyro.param("bl_h_init", self.bl_h_init)
        pyro.param("bl_c_init", self.bl_c_init)
        with pyro.plate("data", data.size(0), subsample_size=batch_size) as ix:
            batch = data[ix]
            n = batch.size(0)
            flat = batch.view(n, -1)
            inputs = {"raw": batch, "embed": self.embed(flat), "bl_embed": self.bl_embed(flat)}
            state = GuideState(h=self.h_init.expand(n, -1), c=self.c_init.expand(n, -1),
                               bl_h=self.bl_h_init.expand(n, -1), bl_c=self.bl_c_init.expand(n, -1),
                               z_pres=torch.ones(n, self.z_pres_size), z_where=self.z_where_init.expand(n, -1),
                               z_what=self.z_what_init.expand(n, -1))
            for t in range(self.num_steps):
                state = self.guide_step(t, n, state, inputs)

    def guide_step(self, t, n, prev, inputs):
        rnn_input = torch.cat((inputs["embed"], prev.z_where, prev.z_what, prev.z_pres), 1)
        h, c = self.rnn(rnn_input, (prev.h, prev.c))
        out = self.predict(h)
        z_pres_p = torch.sigmoid(out[:, :1])
        z_where_loc, z_where_scale = out[:, 1:4], F.softplus(out[:, 4:])
        infer_dict, bl_h, bl_c = self.baseline_step(prev, inputs)
        z_pres = pyro.sample(f"z_pres_{t}", dist.Bernoulli(z_pres_p * prev.z_pres).to_event(1), infer=infer_dict)
        z_where = pyro.sample(f"z_where_{t}", dist.Normal(z_where_loc + self.z_where_loc_prior,
                                                          z_where_scale * self.z_where_scale_prior)
                              .mask(z_pres).to_event(1))
        x_att = image_to_window(z_where, self.window_size, self.x_size, inputs["raw"])
        loc, raw_scale = self.encode(x_att).chunk(2, -1)
        z_what = pyro.sample(f"z_what_{t}", dist.Normal(loc, F.softplus(raw_scale) + 1e-3).mask(z_pres).to_event(1))
        return GuideState(h=h, c=c, bl_h=bl_h, bl_c=bl_c, z_pres=z_pres, z_where=z_where, z_what=z_what)

    def baseline_step(self, prev, inputs):
        rnn_input = torch.cat((inputs["bl_embed"], prev.z_where.detach(), prev.z_what.detach(),
                               prev.z_pres.detach()), 1)
        bl_h, bl_c = self.bl_rnn(rnn_input, (prev.bl_h, prev.bl_c))
        bl_value = self.bl_predict(bl_h) * prev.z_pres
        return dict(baseline=dict(baseline_value=bl_value.squeeze(-1))), bl_h, bl_c


def z_pres_prior_p(opt_step, time_step, start=0.9, end=1e-5, duration=500):
    """The example's exponential annealing of the prior's p(z_pres) with the optimization step."""
    return start * (end / start) ** min(1.0, opt_step / duration)


def batch_arguments(x, batch_size=None):
    """``svi.step(X, batch_size=...)``: all of the data, subsampled by the guide's plate (training), or not."""
    return {"data": x, "batch_size": batch_size}


def make_pair(data):
    air = AIR()
    return Pair(air.model, air.guide, arguments=batch_arguments,
                step_inputs={"batch_size": lambda step: BATCH,
                             "z_pres_prior_p": lambda step: functools.partial(z_pres_prior_p, step)})


def canvases(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n canvases [n, 16, 16] with 0, 1 or 2 of the bundled 8×8 digits at random places, and their counts."""
    g = torch.Generator().manual_seed(seed)
    digits = datasets.load("digits", binarize="none").x_train.reshape(-1, 8, 8)
    counts = torch.randint(0, 3, (n,), generator=g)
    out = torch.zeros(n, CANVAS, CANVAS)
    for i in range(n):
        for _ in range(int(counts[i])):
            d = digits[torch.randint(len(digits), (1,), generator=g)]
            r, c = torch.randint(0, CANVAS - 8 + 1, (2,), generator=g).tolist()
            out[i, r:r + 8, c:c + 8] += d[0]
    return out.clamp(max=1.0), counts


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description="Pyro's AIR on canvases of 0-2 digits")
    p.add_argument("--epochs", type=int, default=200, help="steps: each sees every canvas, subsampled in the guide")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    (x_train, _), (x_test, _) = canvases(200, args.seed), canvases(50, args.seed + 1)
    history = fit(make_pair, Dataset.from_tensors(x_train, x_test), "elbo", epochs=args.epochs, batch_size=200,
                  lr=1e-3, seed=args.seed, device="cpu")
    result = {k: history[-1][k] for k in ("train_bound", "test_bound")}
    print(result)
    return result


if __name__ == "__main__":
    main()
