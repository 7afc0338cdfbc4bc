"""Names to objects: the models, guides and objectives a run's config can ask for.

A run's ``config.json`` is enough to rebuild its model, guide and objective, so every
command that takes a RUN_DIR calls :func:`build` and :func:`build_objective`. A new model
or guide becomes available to the CLI by adding one entry here.
"""

from __future__ import annotations

import dataclasses

import torch

from ppl_vae.guides.delta import DeltaEncoder
from ppl_vae.guides.empty import Empty
from ppl_vae.guides.flows import FlowGaussian
from ppl_vae.guides.full_cov import FullCovGaussian
from ppl_vae.guides.gaussian import DiagonalGaussian
from ppl_vae.guides.linear import LinearGaussian
from ppl_vae.guides.two_layer import TwoLayerGaussian
from ppl_vae.models.conv_vae import ConvEncoder, ConvVAE, conv_fits
from ppl_vae.models.gmm import COVARIANCES, GMM
from ppl_vae.models.mlp import ACTIVATIONS, encoder_body
from ppl_vae.models.ppca import PPCA
from ppl_vae.models.two_layer import TwoLayerVAE
from ppl_vae.models.vae import LIKELIHOODS, VAE

from ppl_vae import data as datasets
from ppl_vae.inference import objectives
from ppl_vae.data import Dataset
from ppl_vae.errors import UsageError
from ppl_vae.inference.weights import iwae_bound

# Network shapes: the default is sized for the 8×8 digits; `iwae` is the one-stochastic-layer
# 784-200-200-50 tanh architecture of Burda et al. 2016, `iwae2` their two-stochastic-layer one
# (x → 200-200 → z1(100) → 100-100 → z2(50)). A preset may also name the model and guide.
NETWORK_DEFAULTS = {"latent_dim": 8, "hidden": [200], "activation": "relu"}
PRESETS = {
    "iwae": {"latent_dim": 50, "hidden": [200, 200], "activation": "tanh"},
    "iwae2": {"model": "two-layer", "guide": "two-layer", "latent_dim": 50, "hidden": [200, 200],
              "activation": "tanh", "z1_dim": 100, "hidden2": [100, 100]},
}


def vae(config: dict, data: Dataset):
    return VAE(data.x_dim, config["latent_dim"], config["hidden"], config["activation"], config["likelihood"])


def conv_vae(config: dict, data: Dataset):
    return ConvVAE(checked_image_shape(data), config["latent_dim"], config["likelihood"])


def checked_image_shape(data: Dataset):
    """The data's image shape, if the convolutional VAE fits it."""
    if not conv_fits(data.image_shape):
        _, h, w = data.image_shape
        raise UsageError(f"--model conv-vae needs image sides that are multiples of 8, got {h}x{w}; "
                         f"pad the images with --pad 32.")
    return data.image_shape


def two_layer_sizes(config: dict) -> dict:
    """Sizes of the two-layer VAE: z2 is ``latent_dim``; z1 and the width of the z1–z2 networks
    default to 2 × latent_dim, the paper's ratios (z2 = 50, z1 = 100, 100-100)."""
    return dict(z1_dim=config.get("z1_dim", 2 * config["latent_dim"]), z2_dim=config["latent_dim"],
                hidden=config["hidden"], hidden2=config.get("hidden2", [2 * config["latent_dim"]] * 2),
                activation=config["activation"])


def two_layer(config: dict, data: Dataset):
    return TwoLayerVAE(data.x_dim, likelihood=config["likelihood"], **two_layer_sizes(config))


def encoder_features(config: dict, data: Dataset):
    """(h_φ, its width): the encoder's feature network — convolutions for conv-vae, else an MLP."""
    if config["model"] == "conv-vae":
        net = ConvEncoder(checked_image_shape(data))
        return net, net.out_features
    return encoder_body(data.x_dim, config["hidden"], config["activation"])


def gaussian(config: dict, data: Dataset):
    net, width = encoder_features(config, data)
    return DiagonalGaussian(data.x_dim, config["latent_dim"], body=net, features=width)


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


def full_cov(config: dict, data: Dataset):
    return FullCovGaussian(*encoder_features(config, data), config["latent_dim"])


FLOW_DEPTH = 2


def flow(name: str):
    def build(config: dict, data: Dataset):
        return FlowGaussian(*encoder_features(config, data), config["latent_dim"], name, config.get("flow_depth", FLOW_DEPTH))
    return build


def delta(config: dict, data: Dataset):
    return DeltaEncoder(*encoder_features(config, data), config["latent_dim"])


def local(config: dict, data: Dataset):
    from ppl_vae.guides.local import LocalGaussian  # it refines q with ppl_vae's log weights: imported here, not in a cycle

    return LocalGaussian(data.x_train.shape[0], config["latent_dim"])


def two_layer_guide(config: dict, data: Dataset):
    return TwoLayerGaussian(data.x_dim, **two_layer_sizes(config))


MODELS = {"vae": vae, "conv-vae": conv_vae, "two-layer": two_layer, "ppca": ppca, "gmm": gmm}
GUIDES = {"gaussian": gaussian, "full-cov": full_cov, "planar": flow("planar"), "iaf": flow("iaf"),
          "delta": delta, "local": local, "two-layer": two_layer_guide, "linear": linear, "empty": empty}
SCHEDULES = ("joint", "vem")

# Latent sites: a guide must sample exactly the model's.
SITES = {"two-layer": ("z1", "z2")}  # every other model and guide: ("z",)

# Which objectives each built-in guide supports, and why not the others.
NEEDS_LOG_Q_AT_ANY_Z = ("score", "score-avg", "score-nn", "rws", "stl", "dreg")
UNSUPPORTED = {
    "delta": ({"score", "score-avg", "score-nn", "iwae", "renyi", "rws", "stl", "dreg"},
              "a point mass has no density to score or to importance-weight with, so it trains only with "
              "elbo or elbo-analytic (reconstruction + log p(z))"),
    "planar": ({"elbo-analytic", *NEEDS_LOG_Q_AT_ANY_Z},
               "a flow has no closed-form KL and its density is known only at its own samples (the planar "
               "map has no inverse), so it trains with elbo, iwae or renyi"),
    "iaf": ({"elbo-analytic", *NEEDS_LOG_Q_AT_ANY_Z},
            "a flow has no closed-form KL and Pyro scores its samples from cached values, not at a given z "
            "with the parameters held fixed, so it trains with elbo, iwae or renyi"),
    "two-layer": ({"elbo-analytic"},
                  "q(z2 | z1) depends on the sampled z1, so the analytic KL of a mean-field guide does not apply"),
}

# Models with a discrete latent marked for enumeration: the only ones `enum` applies to.
ENUMERATED = ("gmm",)
# Guides whose q is a point mass: what trains is log p(x | z) + log p(z) at z = f(x), not a bound.
POINT_MASS = ("delta",)


def bound_name(config: dict) -> str:
    """What a run's train_bound and test_bound are, in words."""
    if config.get("method", "svi") != "svi":
        return "log p(x) (exact)"
    if config["guide"] in POINT_MASS:
        return "log p(x | z) + log p(z) (point-mass guide: not a bound)"
    return "bound"


# What a model gets when --guide, --objective and --binarize are left out (models not listed: the VAE's).
MODEL_DEFAULTS = {
    "vae": {"guide": "gaussian", "objective": "elbo", "binarize": "dynamic"},
    "ppca": {"guide": "linear", "objective": "elbo", "binarize": "none"},
    "gmm": {"guide": "empty", "objective": "enum", "binarize": "none"},
}
# How a model can be fit: `svi` is `fit`; `closed-form` and `em` are the model's own
# maximum-likelihood fits (ppl_vae/classical/em.py). Models not listed train by SVI only.
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
    model, guide, objective = config["model"], config["guide"], config.get("objective")
    model_sites, guide_sites = SITES.get(model, ("z",)), SITES.get(guide, ("z",))
    if model_sites != guide_sites:
        raise UsageError(f"--guide {guide} samples {', '.join(guide_sites)} but --model {model} has latent "
                         f"{', '.join(model_sites)}; use --model two-layer with --guide two-layer "
                         f"(--preset iwae2), and a one-layer guide with the other models.")
    if objective == "enum" and model not in ENUMERATED:
        raise UsageError(f"--objective enum sums discrete latent variables out exactly, and --model {model} has "
                         f"none (its latents are continuous), so it would train a plain ELBO under another "
                         f"name; use --objective elbo.")
    unsupported, why = UNSUPPORTED.get(guide, ((), ""))
    if objective in unsupported:
        raise UsageError(f"--guide {guide} cannot train with --objective {objective}: {why}.")
    if config.get("schedule", "joint") not in SCHEDULES:
        raise UsageError(f"unknown schedule {config['schedule']!r}; choose one of {', '.join(SCHEDULES)}.")
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
