"""glibc's allocator, set so that torch's large CPU buffers are reused rather than faulted in again.

A training step allocates and frees the same large tensors every step (a K × B × H hidden layer is
MiBs). By default glibc returns such blocks to the operating system — blocks above its mmap threshold
(128 KiB at start, rising with what is freed) are unmapped when freed, and the free top of the heap
is trimmed — so the next step touches fresh pages and pays a page fault for every 4 KiB of every
large buffer. :func:`keep_freed_memory` fixes the mmap threshold at its maximum (32 MiB on 64-bit) and
stops trimming, so freed blocks stay in the heap for the next step; the process's resident memory
stays at its peak. Measured on the 2-core development machine (``benchmarks/RESULTS.md``): the DReG
step at K = 50 on the digits network 1.19–1.31× a hand-written PyTorch step in the same process with
glibc's defaults, 1.13–1.15× with this set (both steps run with it then, and both get faster by a
quarter to a third).

It does nothing outside glibc, and nothing where someone set glibc's malloc options themselves
(``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``GLIBC_TUNABLES``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters, from glibc's malloc.h
MMAP_THRESHOLD = 32 * 2 ** 20  # glibc's largest (HEAP_MAX_SIZE / 2 on 64-bit)
TRIM_THRESHOLD = 2 ** 31 - 1  # the largest an int takes: trim only past 2 GiB of free heap top
_done: bool | None = None


def keep_freed_memory() -> bool:
    """Set glibc to keep freed blocks up to 32 MiB for reuse (once per process); whether it is set."""
    global _done
    if _done is None:
        _done = False
        chose = any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")) \
            or "malloc" in os.environ.get("GLIBC_TUNABLES", "")
        mallopt = None if chose else getattr(libc(), "mallopt", None)
        if mallopt is not None:
            _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done


def libc():
    """The C library, or None where it cannot be loaded."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
