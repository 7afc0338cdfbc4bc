"""ppl-vae: deep latent-variable models as Pyro model/guide pairs, trained by SVI.

The Python API: ``data.load`` (or ``Dataset.from_tensors``) for data, ``fit`` to train a
model/guide pair, ``check`` for which objectives a pair can train (one batch, nothing trained),
``evaluate`` for the test ELBO and importance-sampled NLL; the ``ppl-vae``
command line is a thin layer on them.
"""

import os

# OpenMP threads that wait for work sleep instead of spinning: runs sharing a machine's cores then
# take about as long as their share of it, not many times more (scripts/bench_concurrent.py). Read
# when torch loads OpenMP, so it only acts if ppl_vae is imported first; set it yourself to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ppl_vae import data  # noqa: E402
from ppl_vae.data import Dataset  # noqa: E402
from ppl_vae.errors import UsageError  # noqa: E402
from ppl_vae.evaluation.evaluate import evaluate  # noqa: E402
from ppl_vae.inference.checks import check  # noqa: E402
from ppl_vae.inference.trainer import fit  # noqa: E402

__all__ = ["Dataset", "UsageError", "check", "data", "evaluate", "fit"]
__version__ = "0.1.0"
