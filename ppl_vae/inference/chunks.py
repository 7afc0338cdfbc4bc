"""Particles and data points in chunks that fit in memory, for the bounds computed without gradients.

An objective's test bound and the evaluation's K = 5000 importance samples hold particles × points ×
dims elements at once; :func:`chunk_sizes` splits the points (and the particles) so that each tensor
stays within a budget, :func:`max_elements_for` on the device at hand.
"""

from __future__ import annotations

import torch

from ppl_vae.data import split
from ppl_vae.inference.weights import log_weights

# particles × points × dims held at once on the CPU: 16 MiB of float32 per tensor. Larger chunks were
# slower here (K = 5000 on the digits test set, 2 cores: 2.8 s at 2^22, 2.9 s at 2^24, 5.1 s at 2^26).
MAX_ELEMENTS = 1 << 22
CUDA_SHARE, CUDA_INTERMEDIATES = 4, 16  # a quarter of free GPU memory, for ~16 tensors of a chunk's size


def max_elements_for(device) -> int:
    """Elements per chunk on ``device``: :data:`MAX_ELEMENTS` on the CPU; on CUDA a quarter of the free
    memory, shared by the forward pass's intermediate tensors, so K = 5000 runs in few large chunks."""
    device = torch.device(device)
    if device.type != "cuda":
        return MAX_ELEMENTS
    free, _ = torch.cuda.mem_get_info(device)
    return max(MAX_ELEMENTS, free // (4 * CUDA_SHARE * CUDA_INTERMEDIATES))


def chunk_sizes(n: int, dim: int, particles: int, max_elements: int = MAX_ELEMENTS) -> tuple[int, int]:
    """(points per batch, particles per chunk) keeping particles × points × dim within max_elements."""
    per_point = max(1, max_elements // max(dim, 1))
    k_chunk = max(1, min(particles, per_point))
    return max(1, min(n, per_point // k_chunk)), k_chunk


@torch.no_grad()
def bound(model, guide, x, bound_fn, particles: int = 1, *, max_plate_nesting: int = 1,
          inputs: dict | None = None, given_globals: bool = False, vectorized: bool = True) -> torch.Tensor:
    """An objective's bound per data point, bound_fn(log w) with all K particles (drawn at once, or one
    pass each when not ``vectorized``)."""
    batch, _ = chunk_sizes(x.shape[0], x[0].numel() * particles, 1)
    return torch.cat([bound_fn(log_weights(model, guide, xb, particles=particles, max_plate_nesting=max_plate_nesting,
                                           given_globals=given_globals, vectorized=vectorized, **ib))
                      for xb, ib in split(x, inputs, batch)])
