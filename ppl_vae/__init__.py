"""ppl-vae: deep latent-variable models as Pyro model/guide pairs, trained by SVI.

The Python API: ``data.load`` (or ``Dataset.from_tensors``) for data, ``fit`` to train a
model/guide pair, ``check`` for which objectives a pair can train (one batch, nothing trained),
``evaluate`` for the test ELBO and importance-sampled NLL; the ``ppl-vae``
command line is a thin layer on them.
"""

from ppl_vae import data
from ppl_vae.data import Dataset
from ppl_vae.errors import UsageError
from ppl_vae.evaluation.evaluate import evaluate
from ppl_vae.inference.checks import check
from ppl_vae.inference.trainer import fit

__all__ = ["Dataset", "UsageError", "check", "data", "evaluate", "fit"]
__version__ = "0.1.0"
