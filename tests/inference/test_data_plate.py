"""The data plate is found from the program, not assumed by name: lda.py's ``documents``, dmm.py's ``z_minibatch``.

PPCA written with its points in ``pyro.plate("documents")`` and the exact posterior as guide: every
importance weight is p(x) itself, so each bound and evaluate must return the exact log p(x).
"""

import pyro
import pyro.distributions as dist
import pytest

from helpers import exact_guide, small_ppca
from ppl_vae import Dataset, check, evaluate
from ppl_vae.inference.objectives import make


def documents(ppca, plate="documents", beta=False):
    def model(x):
        shift = pyro.sample("beta", dist.Normal(x.new_zeros(ppca.x_dim), 1.0).to_event(1)) if beta else 0.0
        with pyro.plate(plate, x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(ppca.latent_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ ppca.W.T + ppca.mu + shift, ppca.sigma).to_event(1), obs=x)

    q = exact_guide(ppca)

    def guide(x):
        if beta:
            pyro.sample("beta", dist.Normal(x.new_zeros(ppca.x_dim), 1.0).to_event(1))
        with pyro.plate(plate, x.shape[0]):
            pyro.sample("z", q.dist(x))

    return model, guide


@pytest.mark.parametrize("plate", ["documents", "z_minibatch"])
def test_bounds_and_evaluate_are_exact_with_another_plate_name(plate):
    ppca = small_ppca()
    x = ppca.marginal().sample((12,))
    model, guide = documents(ppca, plate)
    exact = ppca.log_marginal(x).detach()
    result = evaluate(model, guide, x, particles=7)
    assert result["test_nll"] == pytest.approx(-exact.mean().item(), abs=1e-9)
    for name in ("iwae", "dreg", "elbo"):
        assert make(name, particles=3).loss.loss(model, guide, x) == pytest.approx(-exact.sum().item(), rel=1e-9)


def test_a_global_latent_is_told_from_the_documents_plate_and_two_observed_plates_are_ambiguous():
    ppca = small_ppca()
    x = ppca.marginal().sample((12,)).float()
    model, guide = documents(ppca.float(), beta=True)
    table = check(model, guide, Dataset.from_tensors(x, x))
    assert table["iwae"].startswith("refused: latent site 'beta' lies outside pyro.plate('documents')"), table

    def two_plates(x):
        with pyro.plate("documents", x.shape[0]):
            pyro.sample("x", dist.Normal(x, 1.0).to_event(1), obs=x)
        with pyro.plate("labels", x.shape[0]):
            pyro.sample("y", dist.Normal(0.0, 1.0), obs=x[:, 0])

    table = check(two_plates, lambda x: None, Dataset.from_tensors(x, x), names=["elbo"])
    assert "observes 'x' in pyro.plate('documents') and 'y' in pyro.plate('labels')" in table["elbo"], table
