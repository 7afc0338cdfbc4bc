"""The one exception type the command line turns into a sentence and exit code 2."""

import contextlib


class UsageError(Exception):
    """Bad input from the user: the message is one sentence saying what is wrong and what to do.

    The CLI prints it on stderr without a traceback and exits with code 2; the Python API
    lets it propagate like any other exception.
    """


class Refusal(UsageError):
    """A refusal whose advice names other objectives: "<why>; use A or B<because>, or <otherwise>.".

    ``alternatives`` says which objectives by what they declare: a predicate on an objective's
    :class:`~ppl_vae.inference.objectives.base.Needs`. :func:`ppl_vae.inference.checks.prepared`
    strikes from them those the same checks also refuse for the pair, so that the advice holds; with
    none left, only ``otherwise`` (if any) is said.
    """

    def __init__(self, why: str, alternatives=None, because: str = "", otherwise: str = ""):
        self.why, self.because, self.otherwise = why, because, otherwise
        self.alternatives = ()
        if alternatives is not None:  # read when refusing: the objectives sit above this module
            from ppl_vae.inference.objectives import offering

            self.alternatives = offering(alternatives)
        super().__init__(self.sentence(self.alternatives))

    def sentence(self, names) -> str:
        """The refusal with ``names`` (the alternatives that hold) as its advice."""
        names, advice = list(names), []
        if names:
            listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
            advice.append(f"use {listed}{self.because}")
        advice += [self.otherwise] if self.otherwise else []
        return self.why + (f"; {', or '.join(advice)}" if advice else "") + "."


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
        if "support (Boolean())" in str(e):  # the commonest: grey levels under a Bernoulli likelihood
            then = (f"{then}; a Bernoulli likelihood takes 0s and 1s, so binarize the data (--binarize dynamic "
                    f"or static) or give the model a likelihood for what it holds")
        raise UsageError(f"{what} ({failure(e)}){then}") from None
