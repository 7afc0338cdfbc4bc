"""ppl-vae: deep latent-variable models as Pyro model/guide pairs, trained by SVI.

The Python API: ``data.load`` (or ``Dataset.from_tensors``) for data, ``fit`` to train a
model/guide pair (or a ``Pair`` with the extras of Pyro's training loops), ``check`` for which objectives a pair can train (one batch, nothing trained),
``evaluate`` for the test ELBO and importance-sampled NLL, ``report`` for a run's figures and report; the ``ppl-vae``
command line is a thin layer on them.
"""

from ppl_vae import data
from ppl_vae.data import Dataset
from ppl_vae.errors import UsageError
from ppl_vae.evaluation.evaluate import evaluate
from ppl_vae.inference.checks import check
from ppl_vae.inference.trainer import fit
from ppl_vae.pair import Pair

__all__ = ["Dataset", "Pair", "UsageError", "check", "data", "evaluate", "fit", "report"]
__version__ = "0.1.0"


def report(run, *, device="auto", trust_code: bool = False) -> str:
    """:func:`ppl_vae.run.report`: a run's figures, ``report.md`` and ``report.json``; returns the path of
    ``report.md`` (imported when called, so that ``import ppl_vae`` loads no model)."""
    from ppl_vae.run import report as write

    return write(run, device=device, trust_code=trust_code)
