"""What a user passes as model and guide: idx is given to the callables that take it, and only to them,
whatever decorators wrap them."""

import torch
from pyro.infer import config_enumerate
from torch import nn

from ppl_vae.pair import as_pyro_callable, with_idx


class Decorated(nn.Module):
    @config_enumerate
    def model(self, x):
        return ("model", x.shape[0])

    @config_enumerate
    def guide(self, x, idx=None):
        return ("guide", None if idx is None else idx.tolist())


@config_enumerate
def plain(x):
    return x.shape[0]


def test_idx_reaches_only_the_callables_that_take_it_through_decorators():
    m, x, idx = Decorated(), torch.zeros(3, 2), torch.arange(3)
    assert with_idx(as_pyro_callable(m, "model"))(x, idx) == ("model", 3)  # was a TypeError: 3 arguments given
    assert with_idx(as_pyro_callable(m, "guide"))(x, idx) == ("guide", [0, 1, 2])
    assert with_idx(plain)(x, idx) == 3
    # named inputs reach **kwargs, idx never does (AIR's model passes its **kwargs on)
    assert with_idx(lambda x, **kw: sorted(kw))(x, idx, y=1) == ["y"]


def test_a_pairs_programs_get_the_named_inputs_their_programs_and_arguments_take(digits):
    """A Pair wraps its model and guide (pair.Adapted): the digits' labels still reach a conditional program
    that takes y, as they reach it unwrapped, and an input only the pair's arguments take counts as taken."""
    import pyro
    import pyro.distributions as dist

    from ppl_vae import Dataset, Pair
    from ppl_vae.pair import named_inputs, takes

    seen = []

    def model(x, y):
        seen.append(y)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(x.new_zeros(x.shape[1]), 1.0).to_event(1), obs=x)

    def guide(x, y):
        pass

    model_fn, guide_fn = Pair(model, guide).programs()
    assert set(named_inputs(model_fn, guide_fn, digits)) == {"y"}
    model_fn(digits.x_train[:3], None, y=digits.y_train[:3])
    assert torch.equal(seen[-1], digits.y_train[:3])
    wrapped = Pair(lambda x: None, lambda x: None, arguments=lambda x, lengths: (x,)).programs()[0]
    assert "lengths" in takes(wrapped)[0]
    data = Dataset.from_tensors({"x": digits.x_train[:4], "lengths": torch.ones(4)})
    assert set(named_inputs(wrapped, wrapped, data)) == {"lengths"}
