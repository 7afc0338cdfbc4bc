"""glibc keeps torch's freed buffers up to 32 MiB for reuse (ppl_vae/memory.py), unless the user set it.

Each check runs in a fresh process: a long-lived one (the test session) has free heap to serve any
request from, whatever the thresholds."""

import os
import subprocess
import sys

import pytest

from ppl_vae import memory

PROBE = """
import ctypes, torch
from ppl_vae import memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]

lib = memory.libc()
lib.mallinfo2.restype = MallInfo2
kept = memory.keep_freed_memory()
before = lib.mallinfo2().hblks
small = torch.empty(2 ** 20)  # 4 MiB: above glibc's default threshold (128 KiB)
after_small = lib.mallinfo2().hblks
large = torch.empty(2 ** 24)  # 64 MiB: above the 32 MiB maximum
print(kept, after_small - before, lib.mallinfo2().hblks - after_small)
"""

glibc = pytest.mark.skipif(memory.libc() is None or not hasattr(memory.libc(), "mallinfo2"),
                           reason="glibc ≥ 2.33 only")


def probe(**env) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    return subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True,
                          check=True).stdout.split()


@pytest.mark.slow
@glibc
def test_a_4_mib_buffer_comes_from_the_heap_and_a_64_mib_one_is_still_mapped():
    assert probe() == ["True", "0", "1"]


@pytest.mark.slow
@glibc
def test_a_users_malloc_setting_is_left_alone_and_glibcs_default_maps_4_mib():
    # mxfast=128 is glibc's own default: the environment names a malloc option but changes nothing
    assert probe(GLIBC_TUNABLES="glibc.malloc.mxfast=128") == ["False", "1", "1"]
