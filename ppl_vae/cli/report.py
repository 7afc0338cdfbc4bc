"""``ppl-vae report``: RUN_DIR/report.md with a run's numbers and every figure."""

from __future__ import annotations

import argparse

from ppl_vae.viz import report
from ppl_vae.cli import options


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="write RUN_DIR/report.md: numbers, figures and configuration of a run",
                       description="Draw every figure of the run into RUN_DIR/figures and write RUN_DIR/report.md "
                                   "(bounds, NLL from eval.json, active units, outlier and imputation results "
                                   "found in the run, configuration) and RUN_DIR/report.json.")
    options.add_run_dir_arg(p)
    options.add_seed_arg(p, help="seed of the prior draws and Monte-Carlo estimates")
    options.add_device_arg(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    run_ = options.open_run(args)
    path = report.write(run_)
    print(f"wrote {path}")
    return 0
