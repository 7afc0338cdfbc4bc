"""``ppl-vae plot``: PNG figures of what a trained run learned (see :mod:`ppl_vae.viz.plots`)."""

from __future__ import annotations

import argparse
import os

from ppl_vae.viz import plots
from ppl_vae.errors import UsageError
from ppl_vae.cli import options
from ppl_vae.io.rundir import writable_dir


def add_parser(sub) -> None:
    p = sub.add_parser("plot", help="figures of a trained run: reconstructions, samples, latent space, ...",
                       description="Draw PNG figures of a trained run into RUN_DIR/figures (or --out): "
                                   + ", ".join(plots.NAMES) + ".")
    options.add_run_dir_arg(p)
    p.add_argument("--out", default=None, help="folder for the PNGs (default: RUN_DIR/figures)")
    p.add_argument("--only", type=figure_names, default=None, metavar="NAMES",
                   help="comma-separated figure names (default: all)")
    options.add_seed_arg(p, help="seed of the prior draws and Monte-Carlo means")
    options.add_device_arg(p)
    p.set_defaults(run=run)


def figure_names(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in plots.NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown figure {', '.join(unknown) or text!r}; choose from "
                                         f"{', '.join(plots.NAMES)}")
    return names


def run(args: argparse.Namespace) -> int:
    run_ = options.open_run(args)
    out = writable_dir(args.out or os.path.join(args.run_dir, "figures"))
    drawn, skipped = plots.draw_all(run_, out, args.only)
    for name, path in drawn.items():
        print(f"wrote {path}")
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")
    if not drawn:
        raise UsageError(f"no figure could be drawn for {args.run_dir}: {next(iter(skipped.values()))}")
    return 0
