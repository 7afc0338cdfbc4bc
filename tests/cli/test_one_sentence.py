"""Pairs that fail get one sentence naming the cause, from check, fit and evaluate alike — never a traceback.

Written as Pyro's examples write their programs: cvae.py's likelihood indexes the batch with a boolean
mask (fine one particle at a time, not with a particle dimension in front); a program that needs an
input it is not given fails on the first two points.
"""

import math
import textwrap

import pyro
import pyro.distributions as dist
import pytest
import torch

import ppl_vae
from helpers import one_line_error, run_cli

PAIRS = textwrap.dedent('''
    import pyro
    import pyro.distributions as dist
    import torch
    from torch import nn


    class MaskedVAE(nn.Module):
        """cvae.py's likelihood: pixels marked -1 are left out by boolean indexing of the batch."""

        def __init__(self, x_dim):
            super().__init__()
            self.decoder, self.encoder = nn.Linear(2, x_dim), nn.Linear(x_dim, 4)

        def model(self, x):
            pyro.module("masked", self)
            with pyro.plate("data", x.shape[0]):
                z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
                keep = x[0] >= 0
                logits = self.decoder(z)
                pyro.sample("x", dist.Bernoulli(logits=logits[:, keep]).to_event(1), obs=x[:, keep])

        def guide(self, x):
            with pyro.plate("data", x.shape[0]):
                loc, log_scale = self.encoder(x).chunk(2, -1)
                pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


    class NeedsLengths(MaskedVAE):
        """dmm.py without its per-batch inputs: the model needs a mask it is not given."""

        def model(self, x, mini_batch_mask):
            super().model(x)


    def masked(data):
        pair = MaskedVAE(data.x_dim)
        return pair, pair


    def needs_lengths(data):
        pair = NeedsLengths(data.x_dim)
        return pair.model, pair.guide
''')


@pytest.fixture
def pairs(tmp_path):
    path = tmp_path / "pairs.py"
    path.write_text(PAIRS)
    return path


def test_check_on_a_pair_that_fails_on_two_points_says_so_in_one_sentence(pairs, capsys):
    line = one_line_error(*run_cli(["check", f"{pairs}:needs_lengths"], capsys)[::2])
    assert "the model and guide fail on two training points (TypeError" in line and "mini_batch_mask" in line, line


def test_a_pair_that_does_not_broadcast_over_particles_trains_and_evaluates_one_particle_at_a_time(pairs, capsys):
    code, stdout, err = run_cli(["check", f"{pairs}:masked", "--objectives", "elbo,iwae,dreg"], capsys)
    assert code == 0 and "Traceback" not in err, err
    rows = dict(line.split(None, 1) for line in stdout.split("\n\n")[1].splitlines()[1:])
    assert set(rows.values()) == {"ok"}, rows
    run = pairs.parent / "run"
    code, _, err = run_cli(["train", "--pair", f"{pairs}:masked", "--objective", "iwae", "--particles", "3",
                            "--epochs", "1", "--out", run, "--no-progress"], capsys)
    assert code == 0, err
    assert "particles are drawn one at a time (Pyro's default), not at once: the program fails with a particle " \
           "dimension in front of its plates (" in err
    code, stdout, err = run_cli(["evaluate", run, "-k", "20"], capsys)
    assert code == 0 and "; particles are drawn one at a time" in stdout, err
    code, stdout, err = run_cli(["compare", "--pair", f"{pairs}:masked", "--objectives", "iwae,dreg", "--epochs", "1",
                                 "--particles", "2", "--eval-particles", "10", "--snr-samples", "3", "--no-progress",
                                 "--out", pairs.parent / "compare"], capsys)
    assert code == 0 and "| dreg |" in stdout, err  # its test IWAE-K and gradient SNRs drawn one at a time too


def test_one_at_a_time_estimates_what_at_once_does(pairs):
    """The masked pair, and the same model written to broadcast (the mask through .mask instead of indexing),
    on the same parameters: evaluate's two estimates of log p(x) agree within their Monte Carlo errors."""
    namespace = {}
    exec(compile(PAIRS, str(pairs), "exec"), namespace)
    masked = namespace["MaskedVAE"](6)

    def broadcasting(x):
        pyro.module("masked", masked)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=masked.decoder(z)).mask(x >= 0).to_event(1), obs=x.clamp(min=0))

    x = torch.bernoulli(torch.full((30, 6), 0.5), generator=torch.Generator().manual_seed(0))
    x[:, 2] = -1  # a pixel left out of every image
    one = ppl_vae.evaluate(masked, masked, x, particles=200)
    once = ppl_vae.evaluate(broadcasting, masked.guide, x, particles=200)
    assert "one_at_a_time" in one and "one_at_a_time" not in once
    gap = abs(one["test_nll"] - once["test_nll"])
    assert gap < 4 * math.hypot(one["test_nll_mc_se"], once["test_nll_mc_se"]), (one, once)
