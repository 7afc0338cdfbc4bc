"""A deep Markov model (Krishnan, Shalit & Sontag 2017) written the way Pyro's ``examples/dmm.py``
writes it, trained by ppl-vae as it stands:

    p_θ(x_{1:T}, z_{1:T}) = Π_t N(z_t | μ_θ(z_{t−1}), σ_θ(z_{t−1})²) Bernoulli(x_t | f_θ(z_t)),
    q_φ(z_{1:T} | x_{1:T}) = Π_t N(z_t | g_φ(z_{t−1}, h_t)),   h_t an RNN run backwards over x_{t:T}.

The constructs are Pyro's example's: one module registered in both programs, the data plate named
``z_minibatch``, a ``pyro.markov`` loop over time steps masked past each sequence's length, the
KL annealing factor as a program argument inside ``poutine.scale``, the reversed sequences packed
for the RNN (``mini_batch_reversed``) and ``ClippedAdam``. The model and guide keep the example's
signature, ``(mini_batch, mini_batch_reversed, mini_batch_mask, mini_batch_seq_lengths,
annealing_factor=1.0)``: the data set holds the sequences ``x`` [N, T, D] and their ``lengths``,
and a per-batch function builds the rest (``Pair(arguments=...)``), as the example's own
``poly.get_mini_batch`` does (unsorted here: ``enforce_sorted=False`` keeps the batch's order,
so each bound stays with its sequence). The annealing factor comes from a schedule per step
(``Pair(step_inputs=...)``), in training only: the test bound is the ELBO, factor 1.

    python scripts/examples/dmm.py --epochs 20
    ppl-vae train --pair scripts/examples/dmm.py:make_pair --data sequences.pt --optimizer ClippedAdam \\
        --optim-args '{"clip_norm": 10.0, "lrd": 0.9999}'
"""

from __future__ import annotations

import argparse

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ppl_vae import Dataset, Pair, fit

ANNEALING_STEPS = 200  # the KL factor rises from 0.2 to 1 over these steps, then stays at 1
MIN_ANNEALING = 0.2


def reversed_in_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each sequence of x [B, T, D] reversed within its own length (the padding stays at the end)."""
    t = torch.arange(x.shape[1], device=x.device)
    source = (lengths[:, None] - 1 - t).clamp(min=0)
    source = torch.where(t < lengths[:, None], source, t)
    return x.gather(1, source[..., None].expand_as(x))


def batch_arguments(x, lengths):
    """The example's mini-batch: the sequences, their reversal packed for the RNN, the mask, the lengths."""
    mask = (torch.arange(x.shape[1], device=x.device) < lengths[:, None]).to(x.dtype)
    packed = pack_padded_sequence(reversed_in_length(x, lengths), lengths.cpu(), batch_first=True,
                                  enforce_sorted=False)
    return {"mini_batch": x, "mini_batch_reversed": packed, "mini_batch_mask": mask, "mini_batch_seq_lengths": lengths}


def annealing(step: int) -> float:
    return min(1.0, MIN_ANNEALING + (1.0 - MIN_ANNEALING) * step / ANNEALING_STEPS)


class Emitter(nn.Module):
    def __init__(self, input_dim: int, z_dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, input_dim))

    def forward(self, z_t):
        return torch.sigmoid(self.net(z_t))


class GatedTransition(nn.Module):
    """p(z_t | z_{t−1}): a gated mix of the identity and a proposed mean (the paper's section 5)."""

    def __init__(self, z_dim: int, hidden: int):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, z_dim), nn.Sigmoid())
        self.proposed = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, z_dim))
        self.lin_z_to_loc = nn.Linear(z_dim, z_dim)
        self.lin_sig = nn.Linear(z_dim, z_dim)
        nn.init.eye_(self.lin_z_to_loc.weight)
        nn.init.zeros_(self.lin_z_to_loc.bias)

    def forward(self, z_t_1):
        gate, proposed = self.gate(z_t_1), self.proposed(z_t_1)
        loc = (1 - gate) * self.lin_z_to_loc(z_t_1) + gate * proposed
        return loc, nn.functional.softplus(self.lin_sig(torch.relu(proposed)))


class Combiner(nn.Module):
    """q(z_t | z_{t−1}, x_{t:T}) from z_{t−1} and the backward RNN's state h_t."""

    def __init__(self, z_dim: int, rnn_dim: int):
        super().__init__()
        self.lin_z_to_hidden = nn.Linear(z_dim, rnn_dim)
        self.lin_hidden_to_loc = nn.Linear(rnn_dim, z_dim)
        self.lin_hidden_to_scale = nn.Linear(rnn_dim, z_dim)

    def forward(self, z_t_1, h_rnn):
        h = 0.5 * (torch.tanh(self.lin_z_to_hidden(z_t_1)) + h_rnn)
        return self.lin_hidden_to_loc(h), nn.functional.softplus(self.lin_hidden_to_scale(h))


class DMM(nn.Module):
    def __init__(self, input_dim: int, z_dim: int = 4, hidden: int = 32, rnn_dim: int = 32):
        super().__init__()
        self.emitter = Emitter(input_dim, z_dim, hidden)
        self.trans = GatedTransition(z_dim, hidden)
        self.combiner = Combiner(z_dim, rnn_dim)
        self.rnn = nn.RNN(input_size=input_dim, hidden_size=rnn_dim, nonlinearity="relu", batch_first=True)
        self.z_0 = nn.Parameter(torch.zeros(z_dim))
        self.z_q_0 = nn.Parameter(torch.zeros(z_dim))
        self.h_0 = nn.Parameter(torch.zeros(1, 1, rnn_dim))

    def model(self, mini_batch, mini_batch_reversed, mini_batch_mask, mini_batch_seq_lengths, annealing_factor=1.0):
        T_max = mini_batch.size(1)
        pyro.module("dmm", self)
        z_prev = self.z_0.expand(mini_batch.size(0), self.z_0.size(0))
        with pyro.plate("z_minibatch", len(mini_batch)):
            for t in pyro.markov(range(1, T_max + 1)):
                z_loc, z_scale = self.trans(z_prev)
                with poutine.scale(scale=annealing_factor):
                    z_t = pyro.sample("z_%d" % t, dist.Normal(z_loc, z_scale)
                                      .mask(mini_batch_mask[:, t - 1:t]).to_event(1))
                pyro.sample("obs_x_%d" % t, dist.Bernoulli(self.emitter(z_t))
                            .mask(mini_batch_mask[:, t - 1:t]).to_event(1), obs=mini_batch[:, t - 1, :])
                z_prev = z_t

    def guide(self, mini_batch, mini_batch_reversed, mini_batch_mask, mini_batch_seq_lengths, annealing_factor=1.0):
        T_max = mini_batch.size(1)
        pyro.module("dmm", self)
        h_0 = self.h_0.expand(1, mini_batch.size(0), self.rnn.hidden_size).contiguous()
        rnn_output, _ = self.rnn(mini_batch_reversed, h_0)
        padded, _ = pad_packed_sequence(rnn_output, batch_first=True, total_length=T_max)
        rnn_output = reversed_in_length(padded, mini_batch_seq_lengths)  # h_t summarizes x_{t:T}
        z_prev = self.z_q_0.expand(mini_batch.size(0), self.z_q_0.size(0))
        with pyro.plate("z_minibatch", len(mini_batch)):
            for t in pyro.markov(range(1, T_max + 1)):
                z_loc, z_scale = self.combiner(z_prev, rnn_output[:, t - 1, :])
                with pyro.poutine.scale(scale=annealing_factor):
                    z_t = pyro.sample("z_%d" % t, dist.Normal(z_loc, z_scale)
                                      .mask(mini_batch_mask[:, t - 1:t]).to_event(1))
                z_prev = z_t


def make_pair(data):
    dmm = DMM(data.x_shape[-1])
    return Pair(dmm.model, dmm.guide, arguments=batch_arguments, step_inputs={"annealing_factor": annealing})


def sequences(n: int, t_max: int = 12, d: int = 6, seed: int = 0) -> dict:
    """Binary sequences [n, t_max, d] of random lengths from a noisy rotation of one active unit."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(t_max // 2, t_max + 1, (n,), generator=g)
    start = torch.randint(d, (n,), generator=g)
    steps = torch.arange(t_max)
    on = (start[:, None] + steps) % d
    probs = torch.full((n, t_max, d), 0.05).scatter_(2, on[..., None], 0.9)
    x = torch.bernoulli(probs, generator=g) * (steps < lengths[:, None])[..., None]
    return {"x": x, "lengths": lengths}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description="Pyro's deep Markov model on generated binary sequences")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--save", metavar="FILE.pt", help="write the generated sequences (train/..., test/...) and stop")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    train, test = sequences(400, seed=args.seed), sequences(100, seed=args.seed + 1)
    if args.save:
        torch.save({**{f"train/{k}": v for k, v in train.items()}, **{f"test/{k}": v for k, v in test.items()}},
                   args.save)
        print(f"wrote {args.save}: x [N, T, D] and lengths [N], {len(train['x'])} training and {len(test['x'])} "
              f"test sequences")
        return {"saved": args.save}
    history = fit(make_pair, Dataset.from_tensors(train, test), "elbo", epochs=args.epochs, batch_size=20,
                  lr=3e-3, optimizer="ClippedAdam", optim_args={"clip_norm": 10.0, "lrd": 0.9999}, seed=args.seed,
                  device="cpu")
    result = {k: history[-1][k] for k in ("train_bound", "test_bound", "train_bound_given")}
    print(result)
    return result


if __name__ == "__main__":
    main()
