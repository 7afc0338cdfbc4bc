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
