"""Option groups shared by the subcommands that build a model, and their config dict."""

from __future__ import annotations

import argparse
import math
import os
import tempfile

import pyro

from ppl_vae import data, registry

from ppl_vae.classical import em

from ppl_vae.inference import objectives
from ppl_vae.device import DEVICES
from ppl_vae.errors import UsageError
from ppl_vae.io.rundir import load_run
from ppl_vae.models.gmm import COVARIANCES
from ppl_vae.models.mlp import ACTIVATIONS
from ppl_vae.models.vae import LIKELIHOODS

DEFAULT_EPOCHS = 100


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


def add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="digits", choices=data.DATASETS, help="digits needs no files or network")
    g.add_argument("--data-dir", default="data", help="folder holding the torchvision datasets")
    g.add_argument("--download", action="store_true", help="download a torchvision dataset that is missing")
    g.add_argument("--binarize", default=None, choices=data.BINARIZE,
                   help="how grey levels become pixels (default: dynamic; none for the continuous models ppca and gmm "
                        "and with --dequantize)")
    g.add_argument("--dequantize", action="store_true",
                   help="grey levels k/(L-1) become (k + u)/L with u ~ U[0,1), for continuous densities")
    g.add_argument("--pad", type=positive_int, default=None, help="zero-pad images to PAD×PAD (e.g. 32)")


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and guide")
    g.add_argument("--model", default=None, choices=list(registry.MODELS), help="the generative model p(x, z) (default: vae)")
    g.add_argument("--guide", default=None, choices=list(registry.GUIDES),
                   help="the guide q(z | x) (default: gaussian; linear for ppca, empty for gmm)")
    g.add_argument("--method", default="svi", choices=registry.METHODS,
                   help="svi: train by SVI; closed-form (ppca) or em (ppca, gmm): the model's own maximum likelihood")
    g.add_argument("--components", type=positive_int, default=10, help="mixture components K (gmm)")
    g.add_argument("--covariance", default="full", choices=COVARIANCES, help="component covariances (gmm)")
    g.add_argument("--preset", choices=list(registry.PRESETS), default=None,
                   help="network shape of a paper (iwae: 784-200-200-50 tanh; iwae2: the two-stochastic-layer "
                        "VAE); explicit flags override it")
    g.add_argument("--latent-dim", type=positive_int, default=None,
                   help=f"dimension of the latent z (default: {registry.NETWORK_DEFAULTS['latent_dim']})")
    g.add_argument("--hidden", type=int_list, default=None,
                   help="hidden widths, comma-separated "
                        f"(default: {','.join(map(str, registry.NETWORK_DEFAULTS['hidden']))})")
    g.add_argument("--activation", choices=list(ACTIVATIONS), default=None,
                   help=f"activation of the hidden layers (default: {registry.NETWORK_DEFAULTS['activation']})")
    g.add_argument("--likelihood", choices=LIKELIHOODS, default=None,
                   help="p(x | z) (default: bernoulli for binarized data, gaussian for --binarize none)")
    g.add_argument("--flow-depth", type=positive_int, default=registry.FLOW_DEPTH,
                   help="flow steps of the planar and iaf guides")


def add_objective_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("objective")
    g.add_argument("--objective", default=None, choices=list(objectives.OBJECTIVES),
                   help="the training objective (default: elbo; enum for gmm)")
    g.add_argument("--particles", type=positive_int, default=1, help="particles K per data point")
    g.add_argument("--jit", action="store_true", help="use Pyro's JIT-compiled loss (static shapes)")
    add_objective_options(g)


def add_objective_options(g) -> None:
    """The options of particular objectives (Rényi's α, the score-function baselines)."""
    d = objectives.DEFAULTS
    g.add_argument("--alpha", type=finite_float, default=d["alpha"], help="α of the renyi objective (α ≠ 1)")
    g.add_argument("--baseline-beta", type=finite_float, default=d["baseline_beta"],
                   help="decay of the running-average baseline of score-avg and score-nn")
    g.add_argument("--baseline-lr-factor", type=positive_float, default=d["baseline_lr_factor"],
                   help="score-nn's baseline network learns at this multiple of --lr")


def add_training_args(p: argparse.ArgumentParser, epochs: int | None = None) -> None:
    """``epochs``: the command's own default number of epochs, if not DEFAULT_EPOCHS."""
    g = p.add_argument_group("training")
    if epochs is None:
        g.add_argument("--epochs", type=nonnegative_int, default=None, help=f"total epochs (default: {DEFAULT_EPOCHS}; "
                                                                       f"with --resume, the run's own)")
    else:
        g.add_argument("--epochs", type=nonnegative_int, default=epochs, help="total epochs")
    g.add_argument("--batch-size", type=positive_int, default=100, help="data points per mini-batch")
    g.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate")
    g.add_argument("--lr-milestones", type=int_list, default=[], metavar="EPOCHS",
                   help="comma-separated epochs at which the learning rate is multiplied by --lr-gamma "
                        "(default: none, a constant rate)")
    g.add_argument("--lr-gamma", type=positive_float, default=0.1,
                   help="factor applied to the learning rate at each of --lr-milestones")
    g.add_argument("--no-drop-last", dest="drop_last", action="store_false",
                   help="keep the last, smaller mini-batch of each epoch")
    g.add_argument("--tol", type=positive_float, default=em.DEFAULT_TOL,
                   help="--method em stops when the training log-likelihood per data point rises by less")
    g.add_argument("--schedule", default="joint", choices=registry.SCHEDULES,
                   help="joint: one SVI step on θ and φ per batch; vem: variational EM, --e-steps steps on the "
                        "guide, then one on the model")
    g.add_argument("--e-steps", type=positive_int, default=1, help="guide steps per batch with --schedule vem")
    add_seed_arg(g)
    g.add_argument("--checkpoint-every", type=positive_int, default=None, metavar="N",
                   help="also checkpoint every N steps, so a killed run loses at most N steps "
                        "(default: after every epoch)")
    g.add_argument("--nan-retries", type=nonnegative_int, default=1,
                   help="times a non-finite loss or gradient may roll training back to the last checkpoint "
                        "before it stops with exit code 3")
    g.add_argument("--nan-lr-factor", type=fraction, default=0.5,
                   help="learning-rate factor applied at each such rollback")
    add_device_arg(p)


def open_run(args: argparse.Namespace):
    """The run in ``args.run_dir`` on ``args.device``, with Pyro's RNG seeded by ``args.seed``."""
    run = load_run(args.run_dir, args.device)
    pyro.set_rng_seed(args.seed)
    return run


def add_device_arg(p: argparse.ArgumentParser, default="auto") -> None:
    p.add_argument("--device", default=default, choices=DEVICES, help="auto: cuda when available, else cpu")


def config_from_args(args: argparse.Namespace) -> dict:
    """The run's config: every option that rebuilds its data, networks, objective and schedule."""
    network = {**registry.NETWORK_DEFAULTS, "model": "vae", **registry.PRESETS.get(args.preset, {})}
    for key in (*network, "guide"):  # explicit flags override the preset
        if getattr(args, key, None) is not None:
            network[key] = getattr(args, key)
    defaults = registry.model_defaults(network["model"])
    network.setdefault("guide", defaults["guide"])
    binarize = args.binarize or ("none" if args.dequantize else defaults["binarize"])
    return {
        "dataset": args.dataset, "data_dir": args.data_dir, "download": args.download,
        "binarize": binarize, "pad": args.pad, "dequantize": args.dequantize,
        "preset": args.preset, **network, "flow_depth": args.flow_depth,
        "likelihood": args.likelihood or registry.default_likelihood(binarize),
        "method": args.method, "components": args.components, "covariance": args.covariance,
        "objective": args.objective or defaults["objective"], "particles": args.particles, "jit": args.jit,
        **{key: getattr(args, key) for key in objectives.DEFAULTS},
        "epochs": DEFAULT_EPOCHS if args.epochs is None else args.epochs, "batch_size": args.batch_size,
        "lr": args.lr, "lr_milestones": args.lr_milestones, "lr_gamma": args.lr_gamma,
        "drop_last": args.drop_last, "tol": args.tol, "schedule": args.schedule, "e_steps": args.e_steps,
        "seed": args.seed, "device": args.device,
        "checkpoint_every": args.checkpoint_every, "nan_retries": args.nan_retries,
        "nan_lr_factor": args.nan_lr_factor,
    }


def writable_dir(path: str) -> str:
    """Create ``path`` if needed; fail with one sentence if a file cannot be written in it."""
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()  # the real test: permissions, read-only mounts, full disks
    except OSError as e:
        raise UsageError(f"cannot write to the output folder {path} ({e.strerror or e}); "
                         f"choose another --out.") from None
    return path
