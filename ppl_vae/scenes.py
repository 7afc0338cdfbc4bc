"""Scenes of several digits on one canvas, with what a scene model should find in them.

:func:`multi_digit_scenes` pastes 0, 1, ..., ``max_objects`` digits at random places on an empty
canvas, as the multi-MNIST of Attend-Infer-Repeat (Eslami et al. 2016) does with MNIST, and records
each scene's count and each digit's box, so that inferred counts and boxes can be scored
(:class:`ppl_vae.models.air.AIR`).
"""

from __future__ import annotations

import torch


def multi_digit_scenes(images: torch.Tensor, n: int, canvas: int = 24, max_objects: int = 2,
                       seed: int = 0) -> dict[str, torch.Tensor]:
    """``n`` scenes of ``canvas`` × ``canvas`` pixels made of the grey digits ``images`` [M, h, w] (in [0, 1]).

    Each scene holds k ~ Uniform{0, ..., max_objects} digits, each drawn uniformly from ``images`` and
    pasted at a uniform integer position with the whole digit inside the canvas; where digits overlap,
    a pixel is their maximum (so it stays in [0, 1]). Deterministic given ``seed``.

    Returns a dict of
    - ``"x"``: the scenes as rows, [n, canvas²], in the dtype of ``images``;
    - ``"counts"``: k per scene, [n] (long);
    - ``"boxes"``: [n, max_objects, 4], row j of scene i the j-th pasted digit's box (x0, y0, w, h) in
      pixels: x0 the column and y0 the row of its top-left pixel, w and h the digit's width and height,
      so that it covers columns x0, ..., x0 + w − 1 and rows y0, ..., y0 + h − 1 (in the pixel-edge
      coordinates of :meth:`AIR.boxes <ppl_vae.models.air.AIR.boxes>`, [x0, x0 + w) × [y0, y0 + h));
      rows j ≥ k are NaN.
    """
    if images.dim() != 3:
        raise ValueError(f"images must be [M, h, w], got shape {tuple(images.shape)}")
    m, h, w = images.shape
    if h > canvas or w > canvas:
        raise ValueError(f"{h} × {w} digits do not fit on a {canvas} × {canvas} canvas")
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, max_objects + 1, (n,), generator=g)
    # every slot drawn, used or not, so that a scene's draws do not depend on the counts before it
    which = torch.randint(0, m, (n, max_objects), generator=g)
    cols = torch.randint(0, canvas - w + 1, (n, max_objects), generator=g)
    rows = torch.randint(0, canvas - h + 1, (n, max_objects), generator=g)

    images = images.detach().cpu()
    x = images.new_zeros(n, canvas, canvas)
    boxes = torch.full((n, max_objects, 4), float("nan"), dtype=images.dtype)
    for i in range(n):
        for j in range(int(counts[i])):
            c, r = int(cols[i, j]), int(rows[i, j])
            x[i, r:r + h, c:c + w] = torch.maximum(x[i, r:r + h, c:c + w], images[which[i, j]])
            boxes[i, j] = torch.tensor([c, r, w, h], dtype=images.dtype)
    return {"x": x.clamp(0, 1).reshape(n, -1), "counts": counts, "boxes": boxes}
