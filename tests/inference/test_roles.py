"""θ and φ by role: the gradient rws and dreg apply is their estimator's, wherever the modules are registered.

Pyro's examples register their networks where it suits them: ``cvae.py`` puts the whole module (the
recognition net inside) in the model alone, ``ss_vae_M2.py`` puts one module holding encoder and
decoder in both model and guide. The pairs below do the same, and each gradient the loss leaves in
the parameters is checked against the estimator computed here by hand, in plain torch (float64), on
the very draws the loss made (recorded by a trace around the guide).
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from torch import nn
from torch.distributions import Bernoulli, Categorical, Normal

from ppl_vae.errors import UsageError
from ppl_vae.inference.objectives import make

K, N, D, Z, C = 4, 3, 5, 2, 3


class M2(nn.Module):
    """y (C classes) and z in the guide, both in the model; registered as ss_vae_M2 does, or as cvae."""

    def __init__(self, register="both", discrete=True):
        super().__init__()
        torch.manual_seed(1)
        self.register, self.discrete = register, discrete
        self.encoder_y = nn.Linear(D, C)
        self.encoder_z = nn.Linear(D + C, 2 * Z)
        self.decoder = nn.Linear(Z + C, D)
        self.double()

    def onehot(self, y):
        return nn.functional.one_hot(y, C).double() if self.discrete else y.softmax(-1)

    def decode(self, z, y):
        return self.decoder(torch.cat([z, self.onehot(y).expand(*z.shape[:-1], C)], -1))

    def encode_z(self, x, y):
        y = self.onehot(y)
        loc, log_scale = self.encoder_z(torch.cat([x.expand(*y.shape[:-1], D), y], -1)).chunk(2, -1)
        return loc, log_scale.exp()

    def y_dist(self, x):
        logits = self.encoder_y(x)
        return dist.Categorical(logits=logits) if self.discrete else dist.Normal(logits, 1.0).to_event(1)

    def model(self, x):
        pyro.module("ss_vae", self)
        with pyro.plate("data", x.shape[0]):
            y = pyro.sample("y", dist.Categorical(torch.ones(C, dtype=x.dtype) / C) if self.discrete
                            else dist.Normal(x.new_zeros(C), 1.0).to_event(1))
            z = pyro.sample("z", dist.Normal(x.new_zeros(Z), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.decode(z, y)).to_event(1), obs=x)

    def guide(self, x):
        if self.register == "both":
            pyro.module("ss_vae", self)
        with pyro.plate("data", x.shape[0]):
            y = pyro.sample("y", self.y_dist(x))
            loc, scale = self.encode_z(x, y)
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))


def by_hand(pair, x, y, z, estimator):
    """The estimator's surrogate for θ and for φ, on the recorded draws y, z [K, N, ...]."""

    def log_q(y, z):  # log q_φ(y | x) + log q_φ(z | x, y)
        log_qy = (Categorical(logits=pair.encoder_y(x)).log_prob(y) if pair.discrete
                  else Normal(pair.encoder_y(x), 1.0).log_prob(y).sum(-1))
        loc, scale = pair.encode_z(x, y)
        return log_qy + Normal(loc, scale).log_prob(z).sum(-1)

    def log_p(y, z):
        log_py = (torch.full(y.shape, -math.log(C), dtype=x.dtype) if pair.discrete
                  else Normal(0.0, 1.0).log_prob(y).sum(-1))
        return log_py + Normal(0.0, 1.0).log_prob(z).sum(-1) + Bernoulli(logits=pair.decode(z, y)).log_prob(x).sum(-1)

    iwae = lambda log_w: (log_w.logsumexp(0) - math.log(K)).sum()  # noqa: E731
    y, z = y.detach(), z.detach()
    fixed_log_w = log_p(y, z) - log_q(y, z)
    theta = iwae(log_p(y, z) - log_q(y, z).detach())
    if estimator == "rws":  # wake-φ: Σ_k w̃_k log q_φ(z_k | x) at fixed z
        return theta, (fixed_log_w.detach().softmax(0) * log_q(y, z)).sum()
    # y and z as functions of φ along their reparameterized path (y is reparameterized only if continuous)
    y_path = y if pair.discrete else pair.encoder_y(x) + (y - pair.encoder_y(x)).detach()
    loc, scale = pair.encode_z(x, y_path)
    z_path = loc + scale * ((z - loc) / scale).detach()
    log_q_path = log_q(y_path, z_path)
    if estimator == "dreg":  # Σ_k w̃_k² log w_k, differentiated along the path only (the score term removed)
        log_w = log_p(y_path, z_path) - (log_q_path - log_q(y, z) + log_q(y, z).detach())
        return theta, (log_w.detach().softmax(0) ** 2 * log_w).sum()
    return theta, iwae(log_p(y_path, z_path) - log_q_path)  # iwae: what a split by registration applied


def grads(loss, params):
    return [g if g is not None else torch.zeros_like(p)
            for p, g in zip(params, torch.autograd.grad(loss, params, allow_unused=True))]


@pytest.mark.parametrize("estimator, register, discrete", [
    ("rws", "both", True),      # ss_vae_M2.py: one module registered in model and guide; discrete y sampled
    ("rws", "model", True),     # cvae.py: the recognition net registered by the model only
    ("dreg", "both", False),
    ("dreg", "model", False),
])
def test_the_gradient_applied_is_the_estimators_wherever_modules_are_registered(estimator, register, discrete):
    pair = M2(register, discrete)
    x = torch.bernoulli(torch.full((N, D), 0.4, dtype=torch.float64), generator=torch.Generator().manual_seed(0))
    recorded = poutine.trace(pair.guide)
    loss = make(estimator, particles=K).loss
    loss.loss_and_grads(pair.model, recorded, x)
    y, z = (recorded.trace.nodes[name]["value"].detach() for name in ("y", "z"))
    assert z.shape == (K, N, Z)  # the loss's own K draws per point

    theta = [*pair.decoder.parameters()]
    phi = [*pair.encoder_y.parameters(), *pair.encoder_z.parameters()]
    applied = [p.grad.clone() for p in theta + phi]
    hand_theta, hand_phi = by_hand(pair, x, y, z, estimator)
    expected = [-g for g in grads(hand_theta, theta) + grads(hand_phi, phi)]
    for got, want in zip(applied, expected):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)  # float64: the same sums in another order
    # and it is not IWAE's guide gradient, which a split by registration applied instead
    iwae_phi = [-g for g in grads(by_hand(pair, x, y, z, "iwae")[1], phi)]
    distance = torch.cat([(a - b).flatten() for a, b in zip(applied[len(theta):], iwae_phi)]).norm()
    assert distance > 0.1 * torch.cat([g.flatten() for g in iwae_phi]).norm()


def test_a_parameter_both_the_model_and_the_guide_compute_with_is_refused_by_rws_and_dreg():
    """Tied weights: the decoder multiplies by the encoder's own weight matrix, so one parameter is θ and φ."""
    encoder = nn.Linear(D, 2 * Z).double()

    def model(x):
        pyro.module("encoder", encoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(Z), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=z @ encoder.weight[:Z]).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            loc, log_scale = encoder(x).chunk(2, -1)
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))

    x = torch.ones(N, D, dtype=torch.float64)
    for name in ("rws", "dreg"):
        with pytest.raises(UsageError, match="parameter 'encoder.weight' is used both by the model's log p"):
            make(name, particles=K).loss.loss_and_grads(model, guide, x)
    make("iwae", particles=K).loss.loss_and_grads(model, guide, x)  # one estimator for all: no roles needed


def test_a_refusals_advice_names_only_objectives_the_same_check_accepts():
    """Binary latents with tied weights: iwae, stl and dreg cannot differentiate through the samples, and rws
    cannot split the tied parameter, so their advice says score (which accepts the pair), never rws."""
    from ppl_vae.data import Dataset
    from ppl_vae.inference.checks import check

    encoder = nn.Linear(D, Z)

    def model(x):
        pyro.module("encoder", encoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Bernoulli(logits=x.new_zeros(Z)).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=z @ encoder.weight).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Bernoulli(logits=encoder(x)).to_event(1))

    x = torch.bernoulli(torch.full((N, D), 0.5), generator=torch.Generator().manual_seed(0))
    table = check(model, guide, Dataset.from_tensors(x, x))
    assert table["score"] == "ok" and table["rws"].startswith("refused: parameter 'encoder.weight' is used both")
    for name in ("iwae", "stl", "dreg"):
        assert table[name].endswith("which has no reparameterized sampler; use elbo, score, score-avg, score-nn, concrete or concrete-st "
                                      "instead"), table[name]
    assert table["rws"].endswith("(registering them together in one pyro.module is fine)"), table["rws"]  # iwae: no
