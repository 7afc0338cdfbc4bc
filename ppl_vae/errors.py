"""The one exception type the command line turns into a sentence and exit code 2."""

import contextlib


class UsageError(Exception):
    """Bad input from the user: the message is one sentence saying what is wrong and what to do.

    The CLI prints it on stderr without a traceback and exits with code 2; the Python API
    lets it propagate like any other exception.
    """


def failure(e: Exception) -> str:
    """An exception in a few words: its type and the first line of its message (two where the first
    only says where, as Pyro's "Error while computing log_prob at site 'x':" does)."""
    text = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    words = " ".join(text[:2]) if len(text) > 1 and text[0].endswith(":") else (text[0] if text else "")
    return f"{type(e).__name__}: {words}" if words else type(e).__name__


@contextlib.contextmanager
def user_code(what: str, then: str = ""):
    """Run a user's program: any exception it raises becomes one UsageError, "``what`` (how it failed)``then``"."""
    try:
        yield
    except UsageError:
        raise
    except Exception as e:  # noqa: BLE001 — a user's program can fail in any way; say how
        raise UsageError(f"{what} ({failure(e)}){then}") from None
