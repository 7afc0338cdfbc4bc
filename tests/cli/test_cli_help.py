"""Every subcommand's --help: each option has help text and states its default at most once, correctly."""

import argparse

import pytest

from ppl_vae.cli import build_parser, show_default


def subcommands() -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def rendered(parser, action) -> str:
    """The help text of one option as --help prints it (before line wrapping)."""
    formatter = parser._get_formatter()
    return formatter._expand_help(action) if action.help else ""


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_every_option_has_help_and_one_correct_default(command):
    parser = subcommands()[command]
    parser.format_help()  # renders without error
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = "/".join(action.option_strings) or action.dest
        text = rendered(parser, action)
        assert text.strip(), f"ppl-vae {command} {name} has no help text"
        assert text.count("(default") <= 1, f"ppl-vae {command} {name}: {text!r}"
        if action.nargs == 0:  # an on/off flag: its help says what it does, never "(default: True)"
            assert "(default" not in text, f"ppl-vae {command} {name}: {text!r}"
        elif action.default not in (None, [], argparse.SUPPRESS) and action.option_strings:
            assert f"(default: {show_default(action.default)})" in text, f"ppl-vae {command} {name}: {text!r}"
