"""ppl-vae: deep latent-variable models as Pyro model/guide pairs, trained by SVI.

The Python API: ``data.load`` (or ``Dataset.from_tensors``) for data, ``fit`` to train a
model/guide pair, ``evaluate`` for the test ELBO and importance-sampled NLL; the ``ppl-vae``
command line is a thin layer on them.
"""

from . import data
from .data import Dataset
from .errors import UsageError
from .evaluate import evaluate
from .train import fit

__all__ = ["Dataset", "UsageError", "data", "evaluate", "fit"]
__version__ = "0.1.0"
