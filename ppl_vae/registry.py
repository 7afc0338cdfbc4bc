"""Names to factories: the models, guides and objectives a run's configuration can name.

A factory is called as ``factory(config, data)`` with a :class:`~ppl_vae.config.Config` and a
:class:`~ppl_vae.data.Dataset`; the built-in ones are the classes' ``from_config``. What a
model or guide can do is declared on its class (``latent_sites``, ``enumerated``,
``fit_methods``, ``objectives``, ``continuous_data``, ``defaults`` on models; ``latent_sites``,
``lacks``, ``point_mass`` on guides; an objective declares what it ``needs``), and :func:`check` is the one compatibility check
that reads those declarations. A new model or guide becomes available to the CLI by adding
one entry here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pyro

from ppl_vae import data as datasets
from ppl_vae import spec
from ppl_vae.config import Config, PairConfig, default
from ppl_vae.data import Dataset
from ppl_vae.device import resolve_device
from ppl_vae.errors import UsageError
from ppl_vae.guides.auxiliary import AuxiliaryGaussian
from ppl_vae.guides.delta import DeltaEncoder
from ppl_vae.guides.discrete import BernoulliEncoder, CategoricalEncoder, TwoLayerBernoulli
from ppl_vae.guides.empty import Empty
from ppl_vae.guides.flows import FlowGaussian, RealNVPGaussian
from ppl_vae.guides.full_cov import FullCovGaussian
from ppl_vae.guides.gaussian import DiagonalGaussian
from ppl_vae.guides.linear import LinearGaussian
from ppl_vae.guides.local import LocalGaussian
from ppl_vae.guides.own import ModelsOwn
from ppl_vae.guides.sequence import RNNGuide
from ppl_vae.guides.two_layer import FactorizedTwoLayerGaussian, TwoLayerGaussian
from ppl_vae.inference import objectives
from ppl_vae.inference.smc import is_stepper
from ppl_vae.inference.weights import iwae_bound
from ppl_vae.models.air import AIR
from ppl_vae.models.conv_vae import ConvVAE
from ppl_vae.models.discrete import SBN, CategoricalVAE, TwoLayerSBN
from ppl_vae.models.dmm import DMM
from ppl_vae.models.draw import DRAW
from ppl_vae.models.gmm import COVARIANCES, GMM
from ppl_vae.models.lgssm import LGSSM
from ppl_vae.models.mlp import ACTIVATIONS
from ppl_vae.models.ppca import PPCA
from ppl_vae.models.two_layer import TwoLayerVAE
from ppl_vae.models.vae import LIKELIHOODS, VAE
from ppl_vae.pair import owning_module

MODELS = {"vae": VAE.from_config, "conv-vae": ConvVAE.from_config, "two-layer": TwoLayerVAE.from_config,
          "ppca": PPCA.from_config, "gmm": GMM.from_config, "sbn": SBN.from_config,
          "sbn2": TwoLayerSBN.from_config, "cat-vae": CategoricalVAE.from_config, "lgssm": LGSSM.from_config,
          "dmm": DMM.from_config, "draw": DRAW.from_config, "air": AIR.from_config}
GUIDES = {"gaussian": DiagonalGaussian.from_config, "full-cov": FullCovGaussian.from_config,
          "planar": FlowGaussian.planar, "iaf": FlowGaussian.iaf, "realnvp": RealNVPGaussian.from_config,
          "delta": DeltaEncoder.from_config,
          "local": LocalGaussian.from_config, "two-layer": TwoLayerGaussian.from_config,
          "two-layer-mf": FactorizedTwoLayerGaussian.from_config, "auxiliary": AuxiliaryGaussian.from_config,
          "linear": LinearGaussian.from_config, "empty": Empty.from_config,
          "bernoulli": BernoulliEncoder.from_config, "categorical": CategoricalEncoder.from_config,
          "bernoulli2": TwoLayerBernoulli.from_config, "rnn": RNNGuide.from_config, "draw": ModelsOwn,
          "air": ModelsOwn}


def declared(factory):
    """The class whose declarations a factory carries (a classmethod's class), else the factory."""
    return getattr(factory, "__self__", factory)


def choose(kind: str, name, table) -> None:
    if name not in table:
        raise UsageError(f"unknown {kind} {name!r}; choose one of {', '.join(table)}.")


# what a user's pair (--pair) is trained with when the run does not say: the VAE's defaults
PAIR_DEFAULTS = {"binarize": "dynamic", "objective": "elbo"}


def resolve(config: Config) -> Config:
    """``config`` with the model's own defaults in place of None (guide, objective, binarization,
    likelihood), so that config.json records what the run really used."""
    if config.data.data_file is not None and config.data.dataset != datasets.FILE:
        config = config.replace(dataset=datasets.FILE)
    if config.pair.pair is not None:
        return resolve_pair(config)
    choose("model", config.pair.model, MODELS)
    own = declared(MODELS[config.pair.model]).defaults
    binarize = config.data.binarize or ("none" if config.data.dequantize else own["binarize"])
    return config.replace(guide=config.pair.guide or own["guide"], objective=config.inference.objective or own["objective"],
                          binarize=binarize, steps=config.pair.steps or own.get("steps"),
                          likelihood=config.pair.likelihood or ("gaussian" if binarize == "none" else "bernoulli"))


def resolve_pair(config: Config) -> Config:
    """A run of a user's pair: no built-in model or guide, and none of their settings."""
    p = config.pair
    for f in dataclasses.fields(PairConfig):
        value = getattr(p, f.name)
        if f.name not in ("pair", "pair_sha256", "model", "guide") and value != default(f.name) \
                or f.name in ("model", "guide") and value not in (None, default(f.name)):
            flag = "--" + f.name.replace("_", "-")
            raise UsageError(f"{flag} sets up a built-in model or guide, and --pair {p.pair} builds its own; drop "
                             f"{flag} (the factory decides its networks).")
    d = config.data
    # a data file is the user's data, given to the program as it is unless --binarize says otherwise
    binarize = d.binarize or ("none" if d.dequantize or d.data_file else PAIR_DEFAULTS["binarize"])
    return config.replace(model=None, guide=None, binarize=binarize,
                          objective=config.inference.objective or PAIR_DEFAULTS["objective"])


def check(config: Config) -> None:
    """Refuse, with one sentence, a configuration no run can honour; before any work starts.

    A user's pair (``--pair``) is checked by running it, when it is built
    (:mod:`ppl_vae.inference.checks`): nothing here knows what it declares."""
    config.validate()
    d, p, i = config.data, config.pair, config.inference
    if d.data_file is None:
        choose("dataset", d.dataset, datasets.DATASETS)
    elif d.dequantize or d.pad is not None:
        raise UsageError(f"--{'dequantize' if d.dequantize else 'pad'} works on the built-in image data sets, not on "
                         f"--data {d.data_file}; prepare the file's tensors as the pair wants them.")
    choose("binarization", d.binarize, datasets.BINARIZE)
    if p.pair is not None:
        choose("objective", i.objective, objectives.OBJECTIVES)
        return
    choose("model", p.model, MODELS)
    choose("guide", p.guide, GUIDES)
    choose("objective", i.objective, objectives.OBJECTIVES)
    choose("activation", p.activation, ACTIVATIONS)
    choose("likelihood", p.likelihood, LIKELIHOODS)
    choose("covariance", p.covariance, COVARIANCES)
    model, guide = declared(MODELS[p.model]), declared(GUIDES[p.guide])
    if hasattr(guide, "of_model") and p.guide != model.defaults["guide"]:
        raise UsageError(f"--guide {p.guide} is the {p.guide} model's own inference network, built from it; "
                         f"use --guide {model.defaults['guide']} with --model {p.model}.")
    own = f"--guide {model.defaults['guide']} --objective {model.defaults['objective']}"
    if not model.latent_sites and p.method == "svi" and (guide.latent_sites or i.objective not in model.objectives):
        raise UsageError(f"the {p.model} model sums its discrete latent out exactly and has nothing for a guide "
                         f"to sample; pass {own} (its defaults).")
    if guide.latent_sites is not None and model.latent_sites != guide.latent_sites:
        what = lambda sites: ", ".join(sites) or "nothing"  # noqa: E731
        raise UsageError(f"--guide {p.guide} samples {what(guide.latent_sites)} but --model {p.model} has latent "
                         f"{what(model.latent_sites)} for a guide to sample; use --guide {model.defaults['guide']} "
                         f"with --model {p.model}" + (" (--preset iwae2)." if p.model == "two-layer" else "."))
    if p.method not in model.fit_methods:
        raise UsageError(f"--method {p.method} is not available for the {p.model} model; "
                         f"choose one of {', '.join(model.fit_methods)}.")
    if p.method != "svi" and model.latent_sites and not hasattr(guide, "set_exact"):
        raise UsageError(f"closed-form and EM fits of {p.model} set the guide to the exact posterior; pass --guide "
                         f"{model.defaults['guide']}, or --method svi to train another guide.")
    if model.continuous_data and d.binarize != "none":
        raise UsageError(f"{p.model} is a density for continuous data; pass --binarize none "
                         f"(with --dequantize for grey levels).")
    if p.method != "svi":
        return
    needs = objectives.declared(i.objective).needs
    if needs.enumeration and not model.enumerated:
        raise UsageError(f"--objective {i.objective} sums discrete latent variables out exactly, and --model {p.model} "
                         f"has none (its latents are continuous), so it would train a plain ELBO under another "
                         f"name; use --objective {model.defaults['objective']}.")
    if needs.stepwise and not (is_stepper(model) and is_stepper(guide)):
        stepwise = [name for name, f in MODELS.items() if is_stepper(declared(f))]
        raise UsageError(f"--objective {i.objective} resamples particles between time steps, so it trains sequence "
                         f"models written in step form (--model {' or '.join(stepwise)}), and --model {p.model} with "
                         f"--guide {p.guide} is not one; use --objective {model.defaults['objective']}.")
    if model.objectives is not None and i.objective not in model.objectives:
        raise UsageError(f"the {p.model} model trains with --objective {' or '.join(model.objectives)} only; "
                         f"pass {own} (its defaults).")
    lacking = [what for what in guide.lacks if what in needs.guide]
    if lacking:
        takes = [n for n in objectives.COMPARED if not objectives.declared(n).needs.guide & guide.lacks.keys()]
        raise UsageError(f"--guide {p.guide} cannot train with --objective {i.objective}, which needs "
                         f"{objectives.GUIDE_CAPABILITIES[lacking[0]]}: {guide.lacks[lacking[0]]}; it trains with "
                         + (f"{', '.join(takes[:-1])} or {takes[-1]}." if len(takes) <= 3 else
                            f"{', '.join(takes[:3])} and the other objectives that do not need that."))


def is_point_mass(config: Config) -> bool:
    """Whether a built-in guide is a point mass (a user's pair: see evaluation.evaluate.latent_sites)."""
    return config.pair.pair is None and declared(GUIDES[config.pair.guide]).point_mass


def train_name(config: Config) -> str:
    """What a run's train_bound is, in words: its objective's value, a bound unless it says otherwise."""
    return objectives.declared(config.inference.objective).train_quantity or bound_name(config)


def bound_name(config: Config) -> str:
    """What a run's test_bound (and, but for mmd, train_bound) is, in words."""
    if config.pair.method != "svi":
        return "log p(x) (exact)"
    if is_point_mass(config):
        return "log p(x | z) + log p(z) (point-mass guide: not a bound)"
    return objectives.declared(config.inference.objective).test_quantity


@dataclass
class Assembled:
    """A run's parts, as :func:`assemble` makes them from its configuration."""

    config: Config  # resolved: the model's defaults filled in
    data: Dataset
    model: object
    guide: object
    objective: objectives.Objective | None  # None for a closed-form or EM fit


def assemble(config: Config, device=None, *, data: Dataset | None = None, trust_code: bool = False,
             seed: bool = True, strict: bool = False) -> Assembled:
    """Everything a run is made of, from its configuration, once, in the order that refuses bad input before
    any work: the model's defaults filled in (:func:`resolve`), the configuration checked (:func:`check`), the
    objective built (:func:`build_objective`; ``strict`` refuses options it does not take), the data loaded on
    ``device`` (default: the configuration's) unless ``data`` is given, the random stream seeded for the
    networks' initial weights (``seed``: not for a run whose weights a checkpoint replaces), and the model
    and guide built (:func:`build`). ``ppl-vae train``, ``compare``, ``check`` and :func:`ppl_vae.run.load`
    assemble their runs so."""
    config = resolve(config)
    check(config)
    objective = build_objective(config, strict) if config.pair.method == "svi" else None
    if data is None:
        data = load_data(config, resolve_device(config.run.device if device is None else device))
    if seed:
        pyro.set_rng_seed(config.training.seed)
    return Assembled(config, data, *_construct(config, data, trust_code), objective)


def build(config: Config, data: Dataset, trust_code: bool = False):
    """(model, guide) for ``config`` on ``data``'s device, the configuration checked first (:func:`check`)."""
    check(config)
    return _construct(config, data, trust_code)


def _construct(config: Config, data: Dataset, trust_code: bool = False):
    """(model, guide) for a checked ``config`` on ``data``'s device: modules, or a user's pair from its factory
    (a recorded one, from a run's config.json, only if trusted: :func:`ppl_vae.spec.factory`)."""
    if config.pair.pair is not None:
        make = spec.factory(config.pair.pair, config.pair.pair_sha256, trust_code)
        pair = spec.build(make, data, f"--pair {config.pair.pair}")
        for module in filter(None, map(owning_module, pair)):
            module.to(data.device)
        return pair
    model = MODELS[config.pair.model](config, data).to(data.device)
    shared = getattr(GUIDES[config.pair.guide], "of_model", None)  # a guide that computes with the model's networks
    guide = shared(model) if shared else GUIDES[config.pair.guide](config, data).to(data.device)
    augment = getattr(declared(GUIDES[config.pair.guide]), "reverse_model", None)
    if augment is not None:  # the auxiliary guide's bound is the ELBO of p(x, z) r(a | z, x)
        model = augment(model, config, data).to(data.device)
    return model, guide


def build_objective(config: Config, strict: bool = False) -> objectives.Objective:
    """The run's objective; ``test_bound = "iwae"`` (set by ``ppl-vae compare``) reports the IWAE-K
    bound on the test set every epoch instead of the objective's own, one yardstick for all.

    ``strict``: refuse an option set away from its default that this objective does not take
    (``--alpha`` with elbo); compare, which trains several objectives, is not strict."""
    i = config.inference
    if strict:
        for key in sorted({key for name in objectives.OBJECTIVES for key in objectives.options_of(name)}):
            if getattr(i, key) != default(key) and key not in objectives.options_of(i.objective):
                flag = "--" + key.replace("_", "-")
                raise UsageError(f"{flag} is an option of " + ", ".join(
                    name for name in objectives.OBJECTIVES if key in objectives.options_of(name))
                    + f", not of --objective {i.objective}; drop {flag}.")
    needs = objectives.declared(i.objective).needs
    if needs.running_state and not config.training.drop_last:
        raise UsageError(f"{i.objective} keeps a {needs.running_state}, so it needs mini-batches of one size; "
                         f"drop --no-drop-last.")
    if config.training.batch_size < needs.min_batch:
        raise UsageError(f"the {i.objective} objective's {needs.batch_statistic}, so it needs --batch-size "
                         f"{needs.min_batch} or more.")
    options = {key: getattr(i, key) for key in objectives.options_of(i.objective)}
    objective = objectives.make(i.objective, particles=i.particles, **options)
    if i.test_bound == "iwae":
        objective = dataclasses.replace(objective, bound=iwae_bound)
    return objective


def load_data(config: Config, device) -> Dataset:
    d = config.data
    if d.data_file is not None:
        if d.data_sha256 is not None and datasets.file_digest(d.data_file) != d.data_sha256:
            raise UsageError(f"{d.data_file} has changed since this run was trained on it (its sha256 differs), so its "
                             f"numbers would be of other data; restore that file, or train the run again.")
        return datasets.load_file(d.data_file, binarize=d.binarize or "none", seed=config.training.seed,
                                  device=device)
    return datasets.load(d.dataset, data_dir=d.data_dir, download=d.download, binarize=d.binarize, pad=d.pad,
                         seed=config.training.seed, device=device, dequantize=d.dequantize)
