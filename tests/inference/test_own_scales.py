"""A program that scales its own log-densities (poutine.scale): every number says which program it is of.

Pyro's examples do it two ways: dmm.py scales the latent sites by a KL-annealing factor, and a user may
scale the whole program (a scale of 1e-4 to tame the loss's size). The test bound and evaluate are of the
unscaled program, the exact log p(x) here (PPCA with its exact posterior as guide); the importance-weighted
objectives refuse the scale; elbo trains the scaled program and says so.
"""

import pytest
from pyro import poutine

from helpers import exact_guide, small_ppca
from ppl_vae import Dataset, check, evaluate, fit
from ppl_vae.errors import UsageError
from ppl_vae.inference.objectives import make

SCALE = 1e-4


def scaled(fn):
    def program(x):
        with poutine.scale(scale=SCALE):
            fn(x)
    return program


def test_evaluate_estimates_log_px_of_the_unscaled_program():
    ppca = small_ppca()
    x = ppca.marginal().sample((20,))
    result = evaluate(scaled(ppca.model), scaled(exact_guide(ppca).guide), x, particles=5)
    # the exact posterior as guide: every weight is p(x), whatever the draws
    assert result["test_nll"] == pytest.approx(-ppca.log_marginal(x).mean().item(), abs=1e-9)


def test_weighted_objectives_refuse_the_scale_and_elbo_trains_the_scaled_program_saying_so(capsys):
    ppca = small_ppca()
    x = ppca.marginal().sample((40,)).float()
    guide = exact_guide(ppca).float()
    model = lambda x: ppca.float().model(x)  # noqa: E731
    table = check(scaled(model), scaled(guide.guide), Dataset.from_tensors(x, x))
    assert table["elbo"] == "ok"
    for name in ("iwae", "renyi", "rws", "stl", "dreg"):
        assert table[name].startswith("refused: the program scales its own log-densities (site 'z' by 0.0001"), table
    with pytest.raises(UsageError, match="scales its own log-densities"):
        make("iwae", particles=2).loss.loss(scaled(model), scaled(guide.guide), x)

    history = fit(scaled(model), scaled(guide.guide), Dataset.from_tensors(x, x), epochs=1, batch_size=40, lr=1e-12,
                  progress="log", device="cpu")
    assert "the training bound is of the scaled program" in capsys.readouterr().err
    exact = ppca.log_marginal(x.double()).mean().item()
    assert history[0]["train_bound_scaled"].startswith("site 'z' by 0.0001")
    assert history[0]["test_bound"] == pytest.approx(exact, abs=1e-4 * abs(exact))  # float32: unscaled log p(x)
    assert history[0]["train_bound"] == pytest.approx(SCALE * exact, rel=1e-4)  # the scaled program's
