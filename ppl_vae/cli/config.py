"""``ppl-vae config``: a run's full configuration as TOML, to repeat it or vary it from a file."""

from __future__ import annotations

import argparse

from ppl_vae import registry
from ppl_vae.cli import options
from ppl_vae.run import config_of


def add_parser(sub) -> None:
    p = sub.add_parser("config", help="print a run's full configuration as TOML",
                       description="Print every setting of a run as TOML, one table per section; "
                                   "`ppl-vae train --config FILE --out NEW` trains the same run again, and options "
                                   "given on the command line override the file's.")
    options.add_run_dir_arg(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    print(registry.resolve(config_of(args.run_dir)).to_toml(), end="")
    return 0
