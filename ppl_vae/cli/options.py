"""Option groups shared by the subcommands that build a model, and the run configuration they make."""

from __future__ import annotations

import argparse
import json
import math

import pyro

from ppl_vae import config, data, registry
from ppl_vae.device import DEVICES
from ppl_vae.errors import UsageError
from ppl_vae.inference import objectives
from ppl_vae.models.air import BASELINES
from ppl_vae.models.gmm import COVARIANCES
from ppl_vae.models.mlp import ACTIVATIONS
from ppl_vae.models.vae import LIKELIHOODS
from ppl_vae.run import load


def int_list(text: str) -> list[int]:
    """'200,200' -> [200, 200]; '' -> []."""
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 200,200, got {text!r}") from None


def checked(convert, ok, expected: str):
    """An argparse type: ``convert(text)``, refused with "expected ..." unless ``ok(value)``."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


positive_int = checked(int, lambda v: v >= 1, "an integer ≥ 1")
nonnegative_int = checked(int, lambda v: v >= 0, "an integer ≥ 0")
seed = checked(int, lambda v: 0 <= v < 2**32, f"an integer seed from 0 to {2**32 - 1}")  # what NumPy accepts
positive_float = checked(float, lambda v: 0 < v < math.inf, "a finite number > 0")
fraction = checked(float, lambda v: 0 < v <= 1, "a number in (0, 1]")
finite_float = checked(float, math.isfinite, "a finite number")


def add_seed_arg(p, help: str = "seed of every random draw (initial weights, data order, particles)") -> None:
    p.add_argument("--seed", type=seed, default=0, help=help)


def add_run_dir_arg(p) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by `ppl-vae train`")
    add_trust_code_arg(p)


def add_trust_code_arg(p) -> None:
    p.add_argument("--trust-code", action="store_true",
                   help="load the pair that the run's config.json names even if this machine has not run that file "
                        "with --pair (it runs the file's code: only for runs you trust)")


def show_default(value) -> str:
    """A default as the user would type it: lists comma-separated."""
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def json_object(text: str) -> dict:
    """A JSON object from the command line, for an argument such as --optim-args."""
    try:
        value = json.loads(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not JSON ({e}); write e.g. '{{\"weight_decay\": 0.01}}'") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r} is not a JSON object; write e.g. '{{\"weight_decay\": 0.01}}'")
    return value


def setting(g, flag: str, help: str, **kwargs) -> None:
    """An option that sets the run-configuration key of the same name (``--latent-dim`` -> ``latent_dim``).

    Left out, it takes nothing from argparse (SUPPRESS), so a --config file or a preset can set
    it; its default, shown in --help, is the one in :mod:`ppl_vae.config`."""
    key = kwargs.get("dest") or flag.lstrip("-").replace("-", "_")
    value = config.default(key)
    if kwargs.get("action") is None and value is not None and value not in ([], {}) and "(default" not in help:
        help = f"{help} (default: {show_default(value)})"
    g.add_argument(flag, default=argparse.SUPPRESS, help=help, **kwargs)


def add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    setting(g, "--dataset", "digits needs no files or network", choices=data.DATASETS)
    setting(g, "--data", "your own data instead: a .pt, .npz or .safetensors file of named tensors, 'x' the "
                         "observed one, the rest named inputs for the pair; 'train/NAME' and 'test/NAME' give the "
                         "split, else a seeded fifth is held out (recorded with its sha256); given to the pair as it is, "
                         "unless --binarize says otherwise", dest="data_file",
            metavar="FILE")
    setting(g, "--data-dir", "folder holding the torchvision datasets")
    setting(g, "--download", "download a torchvision dataset that is missing", action="store_true")
    setting(g, "--binarize", "how grey levels become pixels (default: dynamic; none for the continuous models ppca "
                             "and gmm and with --dequantize)", choices=data.BINARIZE)
    setting(g, "--dequantize", "grey levels k/(L-1) become (k + u)/L with u ~ U[0,1), for continuous densities",
            action="store_true")
    setting(g, "--pad", "zero-pad images to PAD×PAD (e.g. 32)", type=positive_int)


PAIR_HELP = ("your own model and guide: FILE.py:FACTORY or MODULE:FACTORY, a function make_pair(data) that "
             "returns (model, guide); recorded in config.json with the file's sha256, so every command works on "
             "the run. A run's recorded file is loaded again only if you ran it here with --pair, or with "
             "--trust-code")


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and guide")
    setting(g, "--pair", PAIR_HELP, metavar="SPEC")
    setting(g, "--model", "the generative model p(x, z)", choices=list(registry.MODELS))
    setting(g, "--guide", "the guide q(z | x) (default: gaussian; linear for ppca, empty for gmm)",
            choices=list(registry.GUIDES))
    setting(g, "--method", "svi: train by SVI; closed-form (ppca) or em (ppca, gmm): the model's own maximum "
                           "likelihood", choices=config.METHODS)
    setting(g, "--components", "mixture components K (gmm)", type=positive_int)
    setting(g, "--categories", "categories per latent of the categorical VAE (cat-vae; --latent-dim of them)",
            type=positive_int)
    setting(g, "--covariance", "component covariances (gmm)", choices=COVARIANCES)
    setting(g, "--steps", "DRAW's glimpses T, one latent z_t of --latent-dim each (draw; default 8); AIR's most "
                          "objects per scene (air; default 2)", type=positive_int)
    setting(g, "--no-attention", "DRAW reads the whole image and writes the whole canvas, the paper's variant "
                                 "without attention (draw)", dest="attention", action="store_false")
    setting(g, "--z-pres-prior", "AIR's prior probability of one more object, ρ in (0, 1) (air)", type=finite_float)
    setting(g, "--z-pres-baseline", "AIR's score-function baseline for z_pres: the paper's learned one, a decaying "
                                    "average of the cost, or none (air)", choices=BASELINES)
    setting(g, "--preset", "network shape of a paper (iwae: 784-200-200-50 tanh; iwae2: the two-stochastic-layer "
                           "VAE; sbn, sbn-nonlinear: the 200-bit sigmoid belief network, linear or with two tanh "
                           "layers; sbn2: two stochastic layers of 200 bits, linear; cat-vae: 20 latents of 10 categories); explicit settings override it",
            choices=list(config.PRESETS))
    setting(g, "--latent-dim", "dimension of the latent z", type=positive_int)
    setting(g, "--hidden", "hidden widths, comma-separated", type=int_list)
    setting(g, "--activation", "activation of the hidden layers", choices=list(ACTIVATIONS))
    setting(g, "--likelihood", "p(x | z) (default: bernoulli for binarized data, gaussian for --binarize none)",
            choices=LIKELIHOODS)
    setting(g, "--flow-depth", "flow steps of the planar and iaf guides", type=positive_int)


def add_objective_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("objective")
    setting(g, "--objective", "the training objective (default: elbo; enum for gmm)",
            choices=list(objectives.OBJECTIVES))
    setting(g, "--particles", "particles K per data point", type=positive_int)
    setting(g, "--jit", "train elbo and the importance-weighted objectives with their step recorded once as a graph of "
                        "torch ops and replayed, where the run is long enough to pay for it and the replay matches "
                        "the eager step (on unless --no-jit)",
            action=argparse.BooleanOptionalAction)
    add_objective_options(g)


def add_objective_options(g) -> None:
    """The options of particular objectives (Rényi's α, the score-function baselines)."""
    setting(g, "--alpha", "α of the renyi objective (α ≠ 1)", type=finite_float)
    setting(g, "--baseline-beta", "decay of the running-average baseline of score-avg and score-nn, and of relax's control variate level", type=finite_float)
    setting(g, "--baseline-lr-factor", "score-nn's baseline network learns at this multiple of --lr",
            type=positive_float)
    setting(g, "--mmd-scale", "λ of the mmd objective: reconstruction − λ N MMD²(q(z), p(z))", type=positive_float)
    setting(g, "--temperature", "τ of the Concrete relaxation (concrete, concrete-st) at the first step",
            type=finite_float)
    setting(g, "--anneal-rate", "the temperature at step t is max(--min-temperature, --temperature × exp(−rate t)); "
                                "0 keeps it fixed", type=finite_float)
    setting(g, "--min-temperature", "the floor of the annealed temperature", type=finite_float)


def add_training_args(p: argparse.ArgumentParser, epochs: str | None = None) -> None:
    """``epochs``: the help of --epochs, where the command has its own default."""
    g = p.add_argument_group("training")
    setting(g, "--epochs", epochs or f"total epochs (default: {config.default('epochs')}; with --resume, the run's "
                                      f"own)", type=nonnegative_int)
    setting(g, "--batch-size", "data points per mini-batch", type=positive_int)
    setting(g, "--lr", "learning rate", type=positive_float)
    setting(g, "--lr-milestones", "comma-separated epochs at which the learning rate is multiplied by --lr-gamma "
                                  "(default: none, a constant rate)", type=int_list, metavar="EPOCHS")
    setting(g, "--lr-gamma", "factor applied to the learning rate at each of --lr-milestones", type=positive_float)
    setting(g, "--adam-eps", "Adam's ε, added to the root of its second-moment estimate", type=positive_float)
    setting(g, "--optimizer", "a torch.optim class (Adam, AdamW, SGD, Adagrad, RMSprop, ...) or Pyro's ClippedAdam "
                              "or AdagradRMSProp", metavar="NAME")
    setting(g, "--optim-args", "the optimizer's keyword arguments as JSON, e.g. '{\"clip_norm\": 10.0, \"lrd\": "
                               "0.999}' (its rate is --lr)", type=json_object, metavar="JSON")
    setting(g, "--no-drop-last", "keep the last, smaller mini-batch of each epoch", dest="drop_last",
            action="store_false")
    setting(g, "--tol", "--method em stops when the training log-likelihood per data point rises by less",
            type=positive_float)
    setting(g, "--schedule", "joint: one SVI step on θ and φ per batch; vem: variational EM, --e-steps steps on the "
                             "guide, then one on the model", choices=config.SCHEDULES)
    setting(g, "--e-steps", "guide steps per batch with --schedule vem", type=positive_int)
    setting(g, "--seed", "seed of every random draw (initial weights, data order, particles)", type=seed)
    setting(g, "--checkpoint-every", "also checkpoint every N steps, so a killed run loses at most N steps "
                                     "(default: after every epoch)", type=positive_int, metavar="N")
    setting(g, "--nan-retries", "times a non-finite loss or gradient may roll training back to the last checkpoint "
                                "before it stops with exit code 3", type=nonnegative_int)
    setting(g, "--nan-lr-factor", "learning-rate factor applied at each such rollback", type=fraction)
    setting(g, "--validate", "Pyro's distribution checks at every step, not only in one pass over the data before "
                             "training and on a non-finite step", action="store_true")
    setting(p, "--device", "auto: cuda when available, else cpu", choices=DEVICES)
    add_threads_arg(p)
    p.add_argument("--config", metavar="FILE", default=None,
                   help="a TOML file of settings with the keys of config.json (`ppl-vae config RUN_DIR` writes one); "
                        "options given on the command line override it")


def open_run(args: argparse.Namespace, alone: str | None = None):
    """The run in ``args.run_dir`` on ``args.device``, with Pyro's RNG seeded by ``args.seed``.

    ``alone``: what the command does with images by themselves (no labels), to refuse a run whose
    pair also takes named inputs."""
    run = load(args.run_dir, args.device, trust_code=args.trust_code)
    taken = run.inputs()
    if alone is not None and taken:
        raise UsageError(f"{alone}, and this run's pair also takes {', '.join(taken)} with each image; use "
                         f"evaluate, plot or report on it, or a pair that models x alone.")
    pyro.set_rng_seed(args.seed)
    return run


def add_device_arg(p: argparse.ArgumentParser, default="auto") -> None:
    p.add_argument("--device", default=default, choices=DEVICES, help="auto: cuda when available, else cpu")
    add_threads_arg(p)


def add_threads_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch's CPU threads for this command, fixed (default: one per core, fewer while other "
                        "processes keep cores busy, between training steps)")


def given_settings(args: argparse.Namespace) -> dict:
    """The run-configuration keys set on the command line (the others were left out: SUPPRESS)."""
    return {key: value for key, value in vars(args).items() if key in config.SECTION_OF}


def config_from_args(args: argparse.Namespace, **command_defaults) -> config.Config:
    """The run's configuration: ``command_defaults`` < the --config file < the command line,
    with the model's own defaults filled in, checked."""
    values = {**command_defaults, **(config.Config.from_toml(args.config) if args.config else {}),
              **given_settings(args)}
    where = f"the command line or {args.config}" if args.config else "the command line"
    return registry.resolve(config.Config.from_dict(values, where))
