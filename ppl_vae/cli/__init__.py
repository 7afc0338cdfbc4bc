"""The ``ppl-vae`` command: one module per subcommand, each a thin layer on the Python API.

Bad input of any kind ends with one sentence on stderr and exit code 2, never a traceback.
Exit codes: 0 done; 2 bad input; 3 training diverged (non-finite loss or gradient even after
rolling back with a smaller learning rate); 130 / 143 stopped by SIGINT / SIGTERM, after
writing a checkpoint that ``ppl-vae train --resume`` continues; 4 another process of a torchrun
job died or stopped answering (the last checkpoint stands).
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys

from ppl_vae import memory, parallel, threads
from ppl_vae.errors import UsageError
from ppl_vae.inference.trainer import Diverged, Interrupted
from ppl_vae.cli.options import show_default
from ppl_vae.cli import (baselines, check, compare, config, evaluate, gaps, impute, outliers, plot, report, samples,
                         train)

COMMANDS = (train, evaluate, compare, check, gaps, samples, baselines, plot, report, outliers, impute, config)


class HelpFormatter(argparse.HelpFormatter):
    """Shows an option's default once, and only where it says something: not for on/off flags,
    not for a default of None or an empty list (the help text then says what happens), not
    where the help already states it."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if ("(default" in text or action.nargs == 0 or default in (None, argparse.SUPPRESS)
                or default == [] or not action.option_strings):
            return text
        return f"{text} (default: {show_default(default)})"


class Parser(argparse.ArgumentParser):
    """argparse with each default shown once in --help and errors reported in one line."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        if message.startswith("unrecognized arguments:"):  # a misspelt option: name the nearest one
            parsers = [self, *(p for a in self._actions if isinstance(a, argparse._SubParsersAction)
                               for p in a.choices.values())]  # the top parser reports its subcommands' extras
            known = [o for parser in parsers for a in parser._actions for o in a.option_strings]
            for word in message.split()[2:]:
                near = difflib.get_close_matches(word.split("=")[0], known, n=1)
                if word.startswith("--") and near:
                    message += f"; did you mean {near[0]}?"
                    break
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> Parser:
    parser = Parser(prog="ppl-vae", description="Deep latent-variable models in Pyro: train, evaluate, compare.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


PARALLEL = ("train", "evaluate", "compare")  # the commands that run data-parallel under torchrun


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return parallel.leave(_command(args))


def _command(args) -> int:
    if getattr(args, "threads", None):
        threads.fix(args.threads)
    memory.keep_freed_memory()
    rank = 0
    try:
        if parallel.launched():
            if args.command not in PARALLEL:
                raise UsageError(f"ppl-vae {args.command} runs in one process; run it without torchrun (only "
                                 f"{', '.join(PARALLEL)} run data-parallel).")
            rank = parallel.world().rank
            if rank > 0:  # rank 0 prints the results; the others' errors still reach stderr
                sys.stdout = open(os.devnull, "w")
        return args.run(args) or 0
    except UsageError as e:
        print(f"ppl-vae {args.command}: {ranked(rank)}error: {e}", file=sys.stderr)
        return 2
    except (Diverged, Interrupted) as e:
        if rank == 0:  # every rank stops at the same step; one says so
            print(f"ppl-vae {args.command}: {e}", file=sys.stderr)
        return e.exit_code
    except parallel.PeerLost as e:
        print(f"ppl-vae {args.command}: {e}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(e.exit_code)  # at once: the process group's threads, left waiting on the dead peer, abort an exit
    except KeyboardInterrupt:
        print(f"ppl-vae {args.command}: interrupted.", file=sys.stderr)
        return 130


def ranked(rank: int) -> str:
    """"rank R: " in a data-parallel job's other processes (each checks its own input), else nothing."""
    return f"rank {rank}: " if rank > 0 else ""


if __name__ == "__main__":
    sys.exit(main())
