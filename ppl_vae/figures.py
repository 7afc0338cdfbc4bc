"""Figures as PNG files, drawn with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DPI = 100


def figure(width: float = 6.0, height: float = 4.0, **subplots):
    """(fig, axes) of width × height inches, i.e. width·DPI × height·DPI pixels when saved."""
    return plt.subplots(figsize=(width, height), **subplots)


def save(fig, path: str) -> str:
    """Write ``fig`` to ``path`` as PNG at a fixed size, close it, and return the path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png")
    plt.close(fig)
    return path
