"""Names to objects: the models, guides and objectives a run's config can ask for.

A run's ``config.json`` is enough to rebuild its model, guide and objective, so every
command that takes a RUN_DIR calls :func:`build` and :func:`build_objective`. A new model
or guide becomes available to the CLI by adding one entry here.
"""

from __future__ import annotations

import dataclasses

from guides.gaussian import DiagonalGaussian
from models.mlp import ACTIVATIONS
from models.vae import LIKELIHOODS, VAE

from . import data as datasets
from . import objectives
from .data import Dataset
from .errors import UsageError
from .weights import iwae_bound

# Network shapes: the default is sized for the 8×8 digits; `iwae` is the one-stochastic-layer
# 784-200-200-50 tanh architecture of Burda et al. 2016.
NETWORK_DEFAULTS = {"latent_dim": 8, "hidden": [200], "activation": "relu"}
PRESETS = {"iwae": {"latent_dim": 50, "hidden": [200, 200], "activation": "tanh"}}


def vae(config: dict, data: Dataset):
    return VAE(data.x_dim, config["latent_dim"], config["hidden"], config["activation"], config["likelihood"])


def gaussian(config: dict, data: Dataset):
    return DiagonalGaussian(data.x_dim, config["latent_dim"], config["hidden"], config["activation"])


MODELS = {"vae": vae}
GUIDES = {"gaussian": gaussian}


def default_likelihood(binarize: str) -> str:
    """Bernoulli for binarized pixels, Gaussian for grey levels."""
    return "gaussian" if binarize == "none" else "bernoulli"


def validate(config: dict) -> None:
    """Check the names and combinations in ``config`` before any work starts."""
    for kind, table in (("model", MODELS), ("guide", GUIDES)):
        if config[kind] not in table:
            raise UsageError(f"unknown {kind} {config[kind]!r}; choose one of {', '.join(table)}.")
    if config["activation"] not in ACTIVATIONS:
        raise UsageError(f"unknown activation {config['activation']!r}; choose one of {', '.join(ACTIVATIONS)}.")
    if config["likelihood"] not in LIKELIHOODS:
        raise UsageError(f"unknown likelihood {config['likelihood']!r}; choose one of {', '.join(LIKELIHOODS)}.")
    if config["latent_dim"] < 1 or any(h < 1 for h in config["hidden"]):
        raise UsageError("--latent-dim and every --hidden width must be at least 1.")


def build(config: dict, data: Dataset):
    """(model, guide) modules for ``config`` on ``data``'s device."""
    validate(config)
    model = MODELS[config["model"]](config, data).to(data.device)
    guide = GUIDES[config["guide"]](config, data).to(data.device)
    return model, guide


def build_objective(config: dict) -> objectives.Objective:
    """The run's objective; ``test_bound: "iwae"`` (set by ``ppl-vae compare``) reports the IWAE-K
    bound on the test set every epoch instead of the objective's own, one yardstick for all."""
    if config["objective"] in ("score-avg", "score-nn") and not config.get("drop_last", True):
        raise UsageError(f"{config['objective']} keeps its running-average baseline per mini-batch position, so it "
                         f"needs mini-batches of one size; drop --no-drop-last.")
    options = {key: config[key] for key in ("jit", *objectives.DEFAULTS) if key in config}
    objective = objectives.make(config["objective"], particles=config["particles"], **options)
    if config.get("test_bound") == "iwae":
        objective = dataclasses.replace(objective, bound=iwae_bound)
    return objective


def load_data(config: dict, device) -> Dataset:
    return datasets.load(config["dataset"], data_dir=config["data_dir"], download=config.get("download", False),
                         binarize=config["binarize"], pad=config.get("pad"), seed=config["seed"], device=device)
