"""Pairs that fail get one sentence naming the cause, from check, fit and evaluate alike — never a traceback.

Written as Pyro's examples write their programs: cvae.py's likelihood indexes the batch with a boolean
mask (fine one particle at a time, not with a particle dimension in front); a program that needs an
input it is not given fails on the first two points.
"""

import textwrap

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

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


def test_a_pair_that_does_not_broadcast_over_particles_is_refused_naming_the_particle_dimension(pairs, capsys):
    code, stdout, err = run_cli(["check", f"{pairs}:masked", "--objectives", "elbo,iwae"], capsys)
    assert code == 0 and "Traceback" not in err, err
    rows = dict(line.split(None, 1) for line in stdout.split("\n\n")[1].splitlines()[1:])
    for name in ("elbo", "iwae"):  # elbo at K = 2 draws particles at once; the test bound always does
        assert "fail when particles are drawn at once in pyro.plate('particles') at dim=-2" in rows[name], rows
        assert "idx" not in rows[name], rows  # not the guess it used to make
    line = one_line_error(*run_cli(["train", "--pair", f"{pairs}:masked", "--particles", "1",
                                    "--out", str(pairs.parent / "run")], capsys)[::2])
    assert "the model and guide run on two test points but fail when particles are drawn at once" in line, line


def test_evaluate_from_python_names_the_particle_dimension_instead_of_raising_pyros_shape_dump(pairs):
    namespace = {}
    exec(compile(PAIRS, str(pairs), "exec"), namespace)
    pair = namespace["MaskedVAE"](6)
    x = torch.bernoulli(torch.full((4, 6), 0.5), generator=torch.Generator().manual_seed(0))
    with pytest.raises(ppl_vae.UsageError) as refused:
        ppl_vae.evaluate(pair, pair, x, particles=5)
    assert "fail when particles are drawn at once" in str(refused.value)
    assert len(str(refused.value).splitlines()) == 1
