"""Option groups shared by the subcommands that build a model, and their config dict."""

from __future__ import annotations

import argparse
import os

from .. import data, objectives, registry
from ..device import DEVICES
from ..errors import UsageError
from models.mlp import ACTIVATIONS
from models.vae import LIKELIHOODS

DEFAULT_EPOCHS = 100


def int_list(text: str) -> list[int]:
    """'200,200' -> [200, 200]; '' -> []."""
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 200,200, got {text!r}") from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer ≥ 1, got {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="digits", choices=data.DATASETS, help="digits needs no files or network")
    g.add_argument("--data-dir", default="data", help="folder holding the torchvision datasets")
    g.add_argument("--download", action="store_true", help="download a torchvision dataset that is missing")
    g.add_argument("--binarize", default="dynamic", choices=data.BINARIZE)
    g.add_argument("--pad", type=positive_int, default=None, help="zero-pad images to PAD×PAD (e.g. 32)")


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and guide")
    g.add_argument("--model", default=None, choices=list(registry.MODELS), help="(default: vae)")
    g.add_argument("--guide", default=None, choices=list(registry.GUIDES), help="(default: gaussian)")
    g.add_argument("--preset", choices=list(registry.PRESETS), default=None,
                   help="network shape of a paper (iwae: 784-200-200-50 tanh; iwae2: the two-stochastic-layer "
                        "VAE); explicit flags override it")
    g.add_argument("--latent-dim", type=positive_int, default=None,
                   help=f"(default: {registry.NETWORK_DEFAULTS['latent_dim']})")
    g.add_argument("--hidden", type=int_list, default=None,
                   help="hidden widths, comma-separated "
                        f"(default: {','.join(map(str, registry.NETWORK_DEFAULTS['hidden']))})")
    g.add_argument("--activation", choices=list(ACTIVATIONS), default=None,
                   help=f"(default: {registry.NETWORK_DEFAULTS['activation']})")
    g.add_argument("--likelihood", choices=LIKELIHOODS, default=None,
                   help="(default: bernoulli for binarized data, gaussian for --binarize none)")
    g.add_argument("--flow-depth", type=positive_int, default=registry.FLOW_DEPTH,
                   help="flow steps of the planar and iaf guides")


def add_objective_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("objective")
    g.add_argument("--objective", default="elbo", choices=list(objectives.OBJECTIVES))
    g.add_argument("--particles", type=positive_int, default=1, help="particles K per data point")
    g.add_argument("--jit", action="store_true", help="use Pyro's JIT-compiled loss (static shapes)")


def add_training_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=None, help=f"total epochs (default: {DEFAULT_EPOCHS}; "
                                                            f"with --resume, the run's own)")
    g.add_argument("--batch-size", type=positive_int, default=100)
    g.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate")
    g.add_argument("--lr-milestones", type=int_list, default=[], help="epochs at which lr is multiplied by --lr-gamma")
    g.add_argument("--lr-gamma", type=positive_float, default=0.1)
    g.add_argument("--no-drop-last", dest="drop_last", action="store_false",
                   help="keep the last, smaller mini-batch of each epoch")
    g.add_argument("--schedule", default="joint", choices=registry.SCHEDULES,
                   help="joint: one SVI step on θ and φ per batch; vem: variational EM, --e-steps steps on the "
                        "guide, then one on the model")
    g.add_argument("--e-steps", type=positive_int, default=1, help="guide steps per batch with --schedule vem")
    g.add_argument("--seed", type=int, default=0)
    add_device_arg(p)


def add_device_arg(p: argparse.ArgumentParser, default="auto") -> None:
    p.add_argument("--device", default=default, choices=DEVICES, help="auto: cuda when available, else cpu")


def config_from_args(args: argparse.Namespace) -> dict:
    """The run's config: every option that rebuilds its data, networks, objective and schedule."""
    network = {**registry.NETWORK_DEFAULTS, "model": "vae", "guide": "gaussian", **registry.PRESETS.get(args.preset, {})}
    for key in network:
        if getattr(args, key, None) is not None:
            network[key] = getattr(args, key)
    if args.epochs is not None and args.epochs < 0:
        raise UsageError(f"--epochs must be at least 0, got {args.epochs}.")
    return {
        "dataset": args.dataset, "data_dir": args.data_dir, "download": args.download,
        "binarize": args.binarize, "pad": args.pad,
        "preset": args.preset, **network, "flow_depth": args.flow_depth,
        "likelihood": args.likelihood or registry.default_likelihood(args.binarize),
        "objective": args.objective, "particles": args.particles, "jit": args.jit,
        "epochs": DEFAULT_EPOCHS if args.epochs is None else args.epochs, "batch_size": args.batch_size,
        "lr": args.lr, "lr_milestones": args.lr_milestones, "lr_gamma": args.lr_gamma,
        "drop_last": args.drop_last, "schedule": args.schedule, "e_steps": args.e_steps, "seed": args.seed,
        "device": args.device,
    }


def writable_dir(path: str) -> str:
    """Create ``path`` if needed; fail with one sentence if it cannot be written."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create the output folder {path} ({e.strerror}); choose another --out.") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write to the output folder {path}; choose another --out.")
    return path
