"""The one exception type the command line turns into a sentence and exit code 2."""


class UsageError(Exception):
    """Bad input from the user: the message is one sentence saying what is wrong and what to do.

    The CLI prints it on stderr without a traceback and exits with code 2; the Python API
    lets it propagate like any other exception.
    """
