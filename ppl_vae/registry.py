"""Names to objects: the models, guides and objectives a run's config can ask for.

A run's ``config.json`` is enough to rebuild its model, guide and objective, so every
command that takes a RUN_DIR calls :func:`build` and :func:`build_objective`. A new model
or guide becomes available to the CLI by adding one entry here.
"""

from __future__ import annotations

import dataclasses

import torch

from guides.empty import Empty
from guides.gaussian import DiagonalGaussian
from guides.linear import LinearGaussian
from models.gmm import COVARIANCES, GMM
from models.mlp import ACTIVATIONS
from models.ppca import PPCA
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


def ppca(config: dict, data: Dataset):
    if config["latent_dim"] >= data.x_dim:
        raise UsageError(f"PPCA needs --latent-dim below the data dimension {data.x_dim}, "
                         f"got {config['latent_dim']}; pass a smaller --latent-dim.")
    return PPCA(data.x_dim, config["latent_dim"])


def gmm(config: dict, data: Dataset):
    """A mixture started from k-means++ seeds on the training data, whatever fits it next."""
    x = data.train_epoch(0)
    if config.get("components", 10) > x.shape[0]:
        raise UsageError(f"--components {config['components']} exceeds the {x.shape[0]} training points; "
                         f"pass a smaller --components.")
    model = GMM(data.x_dim, config.get("components", 10), config.get("covariance", "full")).to(x)
    return model.init_em(x, torch.Generator(device=x.device).manual_seed(config["seed"]))


def linear(config: dict, data: Dataset):
    return LinearGaussian(data.x_dim, config["latent_dim"])


def empty(config: dict, data: Dataset):
    return Empty()


MODELS = {"vae": vae, "ppca": ppca, "gmm": gmm}
GUIDES = {"gaussian": gaussian, "linear": linear, "empty": empty}

# What a model gets when --guide, --objective and --binarize are left out (models not listed: the VAE's).
MODEL_DEFAULTS = {
    "vae": {"guide": "gaussian", "objective": "elbo", "binarize": "dynamic"},
    "ppca": {"guide": "linear", "objective": "elbo", "binarize": "none"},
    "gmm": {"guide": "empty", "objective": "enum", "binarize": "none"},
}
# How a model can be fit: `svi` is `fit`; `closed-form` and `em` are the model's own
# maximum-likelihood fits (ppl_vae/em.py). Models not listed train by SVI only.
METHODS = ("closed-form", "em", "svi")
FIT_METHODS = {"ppca": ("closed-form", "em", "svi"), "gmm": ("em", "svi")}


def model_defaults(model: str) -> dict:
    return MODEL_DEFAULTS.get(model, MODEL_DEFAULTS["vae"])


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
    validate_method(config)


def validate_method(config: dict) -> None:
    """The fitting method, mixture options and model/guide/objective pairings of PPCA and the GMM."""
    model, method = config["model"], config.get("method", "svi")
    methods = FIT_METHODS.get(model, ("svi",))
    if method not in methods:
        raise UsageError(f"--method {method} is not available for the {model} model; "
                         f"choose one of {', '.join(methods)}.")
    if config.get("components", 10) < 1:
        raise UsageError(f"--components must be at least 1, got {config.get('components')}.")
    if config.get("covariance", "full") not in COVARIANCES:
        raise UsageError(f"unknown covariance {config.get('covariance')!r}; choose one of {', '.join(COVARIANCES)}.")
    if model in ("ppca", "gmm") and config["binarize"] != "none":
        raise UsageError(f"{model} is a density for continuous data; pass --binarize none "
                         f"(with --dequantize for grey levels).")
    if method != "svi" and model == "ppca" and config["guide"] != "linear":
        raise UsageError("closed-form and EM fits of PPCA set the linear guide to the exact posterior; "
                         "pass --guide linear, or --method svi to train another guide.")
    if config["guide"] == "empty" and model != "gmm":
        raise UsageError(f"the empty guide proposes no latent variables, so only a model that sums all of "
                         f"them out (gmm) can use it; pass another --guide for {model}.")
    if model == "gmm" and (config["guide"] != "empty" or config["objective"] != "enum"):
        raise UsageError("the GMM sums its assignment out exactly and has no latent for a guide; "
                         "pass --guide empty --objective enum (the defaults for --model gmm).")


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
                         binarize=config["binarize"], pad=config.get("pad"), seed=config["seed"], device=device,
                         dequantize=config.get("dequantize", False))
