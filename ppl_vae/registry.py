"""Names to objects: the models, guides and objectives a run's config can ask for.

A run's ``config.json`` is enough to rebuild its model, guide and objective, so every
command that takes a RUN_DIR calls :func:`build` and :func:`build_objective`. A new model
or guide becomes available to the CLI by adding one entry here.
"""

from __future__ import annotations

from guides.delta import DeltaEncoder
from guides.flows import FlowGaussian
from guides.full_cov import FullCovGaussian
from guides.gaussian import DiagonalGaussian
from guides.two_layer import TwoLayerGaussian
from models.conv_vae import ConvEncoder, ConvVAE, conv_fits
from models.mlp import ACTIVATIONS, encoder_body
from models.two_layer import TwoLayerVAE
from models.vae import LIKELIHOODS, VAE

from . import data as datasets
from . import objectives
from .data import Dataset
from .errors import UsageError

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
    from guides.local import LocalGaussian  # it refines q with ppl_vae's log weights: imported here, not in a cycle

    return LocalGaussian(data.x_train.shape[0], config["latent_dim"])


def two_layer_guide(config: dict, data: Dataset):
    return TwoLayerGaussian(data.x_dim, **two_layer_sizes(config))


MODELS = {"vae": vae, "conv-vae": conv_vae, "two-layer": two_layer}
GUIDES = {"gaussian": gaussian, "full-cov": full_cov, "planar": flow("planar"), "iaf": flow("iaf"),
          "delta": delta, "local": local, "two-layer": two_layer_guide}
SCHEDULES = ("joint", "vem")

# Latent sites: a guide must sample exactly the model's.
SITES = {"two-layer": ("z1", "z2")}  # every other model and guide: ("z",)

# Which objectives each built-in guide supports, and why not the others. The names cover every
# objective of the inference-method issue, registered in ppl_vae/objectives or not yet.
ALL_OBJECTIVES = ("elbo", "elbo-analytic", "score", "score-avg", "score-nn", "iwae", "renyi", "rws", "stl", "dreg")
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


def build(config: dict, data: Dataset):
    """(model, guide) modules for ``config`` on ``data``'s device."""
    validate(config)
    model = MODELS[config["model"]](config, data).to(data.device)
    guide = GUIDES[config["guide"]](config, data).to(data.device)
    return model, guide


def build_objective(config: dict) -> objectives.Objective:
    return objectives.make(config["objective"], particles=config["particles"], jit=config.get("jit", False))


def load_data(config: dict, device) -> Dataset:
    return datasets.load(config["dataset"], data_dir=config["data_dir"], download=config.get("download", False),
                         binarize=config["binarize"], pad=config.get("pad"), seed=config["seed"], device=device)
