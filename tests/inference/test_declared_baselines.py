"""Score-function baselines a guide declares itself (infer={"baseline": ...}, as AIR declares them for
z_pres) are used as Pyro's TraceGraph_ELBO uses them: by elbo, which then trains TraceGraph_ELBO, and
by the score-function objectives, which keep them in place of their own."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

from ppl_vae import Dataset, fit

N, D = 32, 3


class Baseline(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(D, 1)

    def forward(self, x):
        return self.linear(x).squeeze(-1)


class Pair(nn.Module):
    """A binary latent per point, b ~ Bernoulli(1/2), x | b ~ N(W b, I); q(b | x) with a declared nn baseline."""

    def __init__(self):
        super().__init__()
        self.decoder, self.encoder, self.baseline = nn.Linear(1, D), nn.Linear(D, 1), Baseline()

    def model(self, x):
        pyro.module("pair", self)
        with pyro.plate("data", x.shape[0]):
            b = pyro.sample("b", dist.Bernoulli(x.new_full((x.shape[0],), 0.5)))
            pyro.sample("x", dist.Normal(self.decoder(b[..., None]), 1.0).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("pair", self)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("b", dist.Bernoulli(logits=self.encoder(x).squeeze(-1)),
                        infer={"baseline": {"nn_baseline": self.baseline, "nn_baseline_input": x}})


@pytest.mark.parametrize("objective", ["elbo", "score", "score-avg"])
def test_a_declared_baseline_is_trained_as_tracegraph_elbo_trains_it(objective):
    x = torch.randn(N, D, generator=torch.Generator().manual_seed(0))
    pyro.set_rng_seed(0)
    pair = Pair()
    before = pair.baseline.linear.weight.detach().clone()
    fit(pair, pair, Dataset.from_tensors(x, x), objective, epochs=2, batch_size=8, lr=1e-2, progress=False,
        device="cpu", jit=False)
    # only TraceGraph_ELBO's baseline loss, (cost − b(x))², reaches the baseline's weights
    assert not torch.equal(pair.baseline.linear.weight, before)
