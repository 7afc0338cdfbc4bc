"""glibc keeps torch's freed buffers up to 32 MiB for reuse (ppl_vae/memory.py), unless the user set it."""

import ctypes
import os
import subprocess
import sys

import pytest
import torch

from ppl_vae import memory


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                       "fsmblks", "uordblks", "fordblks", "keepcost")]


def mmapped_blocks() -> int:
    lib = memory.libc()
    lib.mallinfo2.restype = MallInfo2
    return lib.mallinfo2().hblks


glibc = pytest.mark.skipif(memory.libc() is None or not hasattr(memory.libc(), "mallinfo2"),
                           reason="glibc ≥ 2.33 only")


@glibc
def test_a_4_mib_buffer_comes_from_the_heap_and_a_64_mib_one_is_still_mapped():
    if any(k.startswith("MALLOC_") for k in os.environ):
        pytest.skip("malloc options set in the environment")
    assert memory.keep_freed_memory()
    before = mmapped_blocks()
    small = torch.empty(2 ** 20)  # 4 MiB: glibc's default threshold (128 KiB) would map it
    assert mmapped_blocks() == before
    large = torch.empty(2 ** 24)  # 64 MiB: above the 32 MiB threshold
    assert mmapped_blocks() == before + 1
    del small, large


@glibc
def test_a_users_malloc_setting_is_left_alone():
    code = "from ppl_vae import memory; print(memory.keep_freed_memory())"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "MALLOC_TRIM_THRESHOLD_": "131072"},
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
