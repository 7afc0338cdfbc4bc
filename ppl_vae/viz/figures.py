"""Figures as PNG files, drawn with matplotlib's Agg backend (no display needed).

matplotlib is imported when the first figure is drawn, not with this module: it takes half a
second, and every ``ppl-vae`` command imports the modules that draw (``train`` draws nothing).
"""

from __future__ import annotations

import functools
import os

import numpy as np

DPI = 100


@functools.cache
def pyplot():
    """matplotlib.pyplot on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure(width: float = 6.0, height: float = 4.0, **subplots):
    """(fig, axes) of width × height inches, i.e. width·DPI × height·DPI pixels when saved."""
    return pyplot().subplots(figsize=(width, height), **subplots)


def save(fig, path: str) -> str:
    """Write ``fig`` to ``path`` as PNG at a fixed size, close it, and return the path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png")
    pyplot().close(fig)
    return path


def mosaic(images, image_shape, gap: int = 1, fill: float = 0.12):
    """One array of a grid of images: ``images`` [rows, cols, C·H·W] (flattened, values in
    [0, 1]) -> [rows·(H+gap)−gap, cols·(W+gap)−gap] (one channel) or [..., C], with gaps of
    grey level ``fill`` (faint lines once :func:`show_mosaic` draws ink black on white)."""
    images = np.asarray(images, dtype=float)
    c, h, w = image_shape
    rows, cols = images.shape[:2]
    tiles = images.reshape(rows, cols, c, h, w).transpose(0, 1, 3, 4, 2)  # channels last
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap, c), fill, dtype=float)
    for r in range(rows):
        for k in range(cols):
            out[r * (h + gap):r * (h + gap) + h, k * (w + gap):k * (w + gap) + w] = tiles[r, k]
    return out[..., 0] if c == 1 else out


def show_mosaic(ax, image, row_labels=(), title=None):
    """Draw a :func:`mosaic` on ``ax``, rows labelled on the left. One channel is drawn as black
    ink on white paper (grey level 1 = black); an RGB array is drawn as it is."""
    ax.imshow(1.0 - image if image.ndim == 2 else image, cmap="gray", vmin=0.0, vmax=1.0,
              interpolation="nearest")
    ax.set_xticks([])
    n = len(row_labels)
    if n:
        height = image.shape[0] / n
        ax.set_yticks([(i + 0.5) * height - 0.5 for i in range(n)], list(row_labels))
        ax.tick_params(axis="y", length=0)
    else:
        ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title)
