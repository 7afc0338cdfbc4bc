"""Named inputs: a user's conditional pair receives each batch's labels by keyword, in fit, in the
test bound and in evaluate; its log weights are those of a hand-written torch computation."""

import math

import pyro
import pyro.distributions as dist
from pyro.infer import TraceEnum_ELBO, config_enumerate
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ppl_vae
from ppl_vae import Dataset, fit
from ppl_vae.errors import UsageError
from ppl_vae.evaluation.evaluate import evaluate
from ppl_vae.inference.weights import log_weights
from ppl_vae.pair import callables

X_DIM, Z_DIM, CLASSES = 4, 2, 3


class ConditionalPair(nn.Module):
    """p(z) = N(0, I), p(x | z, y) = N(W z + B 1_y, σ² I); q(z | x, y) = N(A x + C 1_y, diag s²)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.W, self.B = nn.Parameter(torch.randn(X_DIM, Z_DIM, generator=g)), nn.Parameter(torch.randn(X_DIM, CLASSES, generator=g))
        self.A, self.C = nn.Parameter(torch.randn(Z_DIM, X_DIM, generator=g)), nn.Parameter(torch.randn(Z_DIM, CLASSES, generator=g))
        self.log_s = nn.Parameter(torch.full((Z_DIM,), -0.5))

    def model(self, x, y):
        pyro.module("cond", self)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(Z_DIM), 1.0).to_event(1))
            mean = z @ self.W.T + F.one_hot(y, CLASSES).to(x) @ self.B.T
            pyro.sample("x", dist.Normal(mean, 0.5).to_event(1), obs=x)

    def q(self, x, y):
        return dist.Normal(x @ self.A.T + F.one_hot(y, CLASSES).to(x) @ self.C.T, self.log_s.exp()).to_event(1)

    def guide(self, x, y):
        pyro.module("cond", self)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", self.q(x, y))


def data(n=60, seed=1):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, CLASSES, (n,), generator=g)
    x = torch.randn(n, X_DIM, generator=g) + 2.0 * y[:, None]
    return {"x": x, "y": y}


def test_log_weights_of_a_conditional_pair_equal_a_hand_written_torch_computation():
    pair, batch = ConditionalPair(), data(8)
    x, y = batch["x"], batch["y"]
    model, guide = callables(pair, pair)
    pyro.set_rng_seed(5)
    lw = log_weights(model, guide, x, particles=3, y=y)
    pyro.set_rng_seed(5)
    q = pair.q(x, y)
    z = q.sample((3,))
    with torch.no_grad():
        mean = z @ pair.W.T + F.one_hot(y, CLASSES).float() @ pair.B.T
        expected = (dist.Normal(0.0, 1.0).log_prob(z).sum(-1) + dist.Normal(mean, 0.5).log_prob(x).sum(-1)
                    - q.log_prob(z))
    torch.testing.assert_close(lw, expected, rtol=1e-5, atol=1e-5)


class Recording(ConditionalPair):
    """The pair, noting which labels came with which rows of x."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def model(self, x, y):
        self.seen.append((x.detach().clone(), y.clone()))
        super().model(x, y)


def test_fit_passes_each_batch_its_own_labels_and_the_test_bound_the_test_labels():
    train, test = data(60), data(20, seed=2)
    ds = Dataset.from_tensors(train, test)
    assert set(ds.inputs_train) == {"y"} and ds.x_train.shape == (60, X_DIM)
    pair = Recording()
    history = fit(pair, pair, ds, "iwae", particles=4, epochs=2, batch_size=16, progress=False, device="cpu")
    assert len(history) == 2 and all(m["test_bound"] is not None for m in history)
    label_of = {tuple(row.tolist()): int(label) for part in (train, test) for row, label in zip(part["x"], part["y"])}
    assert len(pair.seen) > 8  # the creation pass, 2 × 3 steps and two test bounds
    for x, y in pair.seen:
        assert [label_of[tuple(row.tolist())] for row in x] == y.tolist()


def test_evaluate_passes_the_labels():
    """With B 1_y = 2y, the pair explains x = 2y + noise with its labels, and much worse with all labels 0."""
    pair, test = ConditionalPair(), Dataset.from_tensors(data(20, seed=2), data(40, seed=3))
    with torch.no_grad():
        pair.W.zero_(), pair.A.zero_(), pair.C.zero_(), pair.log_s.zero_()
        pair.B.copy_(2.0 * torch.arange(CLASSES).float().expand(X_DIM, CLASSES))
    result = evaluate(pair, pair, test.x_test, particles=50, inputs=test.inputs_test)
    wrong = evaluate(pair, pair, test.x_test, particles=50, inputs={"y": torch.zeros_like(test.inputs_test["y"])})
    assert result["test_nll"] < wrong["test_nll"] - 4 * (result["test_nll_se"] + wrong["test_nll_se"]), (result, wrong)


def test_a_named_input_that_nobody_takes_is_refused_before_training():
    pair = ConditionalPair()
    before = {k: v.clone() for k, v in pair.state_dict().items()}
    split = {**data(30), "label": torch.zeros(30)}
    with pytest.raises(UsageError, match="named input 'label' is a parameter of neither the model nor the guide"):
        fit(pair, pair, Dataset.from_tensors(split), epochs=1, progress=False, device="cpu")
    assert all(torch.equal(v, pair.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize("train, test, words", [
    ({"image": torch.zeros(5, 2)}, None, "names 'image' and no 'x'"),
    ({"x": torch.zeros(5, 2), "y": torch.zeros(4)}, None, "named input 'y' of the training data has shape"),
    ({"x": torch.zeros(5, 2), "y": torch.zeros(5)}, {"x": torch.zeros(3, 2)}, "the same names in both"),
])
def test_malformed_named_data_is_refused_with_one_sentence(train, test, words):
    with pytest.raises(UsageError, match=words):
        Dataset.from_tensors(train, test)


def test_check_runs_a_conditional_pair_with_its_labels():
    pair = ConditionalPair()
    table = ppl_vae.check(pair, pair, Dataset.from_tensors(data(20)), ["elbo", "iwae", "score"])
    assert table == {"elbo": "ok", "iwae": "ok", "score": "ok"}, table


@config_enumerate
def partly_labelled_model(x, y, labelled):
    """A mixture whose assignment is observed where labelled (obs_mask) and summed out elsewhere."""
    means = pyro.param("means", torch.arange(CLASSES * X_DIM, dtype=x.dtype).reshape(CLASSES, X_DIM) / 4)
    with pyro.plate("data", x.shape[0]):
        c = pyro.sample("c", dist.Categorical(logits=x.new_zeros(CLASSES)), obs=y, obs_mask=labelled)
        pyro.sample("x", dist.Normal(means[c], 1.0).to_event(1), obs=x)


def no_guide(x, y, labelled):
    pass


def test_labels_observed_where_labelled_and_summed_out_elsewhere_give_the_exact_log_likelihood():
    """log w = log p(x, y) for a labelled point and log Σ_c p(x, c) for an unlabelled one (was off by log C
    for the labelled points when the masked enumerated site's log-density was masked to 0)."""
    pyro.clear_param_store()
    batch = data(10)
    x, y = batch["x"], batch["y"]
    labelled = torch.arange(10) % 3 == 0
    model, guide = callables(partly_labelled_model, no_guide)
    lw = log_weights(model, guide, x, particles=1, y=y, labelled=labelled)[0]
    means = pyro.param("means").detach()
    joint = dist.Normal(means, 1.0).to_event(1).log_prob(x[:, None]) - math.log(CLASSES)  # [N, C]
    expected = torch.where(labelled, joint.gather(1, y[:, None]).squeeze(1), joint.logsumexp(1))
    torch.testing.assert_close(lw, expected, rtol=1e-5, atol=1e-5)
    enum = -TraceEnum_ELBO(max_plate_nesting=1).loss(partly_labelled_model, no_guide, x, y, labelled)
    assert abs(enum - expected.sum().item()) < 1e-4 * abs(enum)  # Pyro's own answer
