"""Small helpers for the sentences the tool prints."""


def count(n: int, noun: str, plural: str | None = None) -> str:
    """'1 epoch', '2 epochs'."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
