"""Torch's CPU threads for a process that shares the machine with others.

torch starts one intra-op thread per core, and its OpenMP threads spin while they wait for
work, so processes that each take every core collapse together: on the 2-core development
machine two concurrent ``ppl-vae train`` runs took 1.9× as long as one and four took 7.1×
(``benchmarks/RESULTS.md``). A :class:`Governor` instead looks, between training steps and
every few seconds, at how many cores the *other* processes keep busy (the machine's CPU time
from ``/proc/stat`` less this process's own) and gives torch the cores left: at least one, at
most the cores this process may run on. Alone, a run keeps every core; beside others it steps
down, and back up when they finish.

The governor stays out of the way of a count someone chose: ``--threads N`` (:func:`fix`),
``OMP_NUM_THREADS``, or ``torch.set_num_threads`` called before training. Outside Linux it
does nothing. The count changes how many cores compute, not what they compute: on this
project's torch build a run ends with bit-identical parameters at 1 and at 2 threads
(``tests/test_threads_governor.py``).
"""

from __future__ import annotations

import os
import time

import torch

INTERVAL = 2.0  # seconds between looks at the machine's load
_DEFAULT = torch.get_num_threads()  # torch's own count at import: one per core
_fixed = False
_governed: int | None = None  # the count a governor set last


def fix(n: int) -> None:
    """Use ``n`` threads for the rest of the process (``--threads N``): no governor changes them."""
    global _fixed
    torch.set_num_threads(n)
    _fixed = True


def chosen() -> bool:
    """Whether someone chose the thread count (:func:`fix`, ``OMP_NUM_THREADS``, ``torch.set_num_threads``)."""
    return _fixed or "OMP_NUM_THREADS" in os.environ or torch.get_num_threads() not in (_DEFAULT, _governed)


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def machine_busy() -> tuple[float, float] | None:
    """(busy, total) CPU time of the whole machine so far, in clock ticks, from /proc/stat; None elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def own_cpu() -> float:
    """This process's CPU time so far (all its threads), in seconds."""
    t = os.times()
    return t.user + t.system


_last = (time.monotonic(), machine_busy(), own_cpu()) if machine_busy() is not None else None  # from import on


class Governor:
    """Sets torch's threads to the cores the other processes leave free; call :meth:`tick` between steps
    and :meth:`stop` at the end, which gives torch back the count it had."""

    def __init__(self, interval: float | None = None):
        self.interval = INTERVAL if interval is None else interval
        self.cores = max(1, min(usable_cores(), _DEFAULT))
        self.machine_cores = os.cpu_count() or self.cores
        self.before = torch.get_num_threads()
        # the first look covers the time since the process started (imports, data checks, compiling), so a
        # run that starts beside busy processes steps down at once instead of after its first interval
        self.last = _last if _last is not None else self._sample()

    @classmethod
    def start(cls) -> "Governor | None":
        """A governor, unless the thread count was chosen or the machine's load cannot be read."""
        if chosen() or machine_busy() is None:
            return None
        governor = cls()
        governor.tick()
        return governor

    def _sample(self):
        return time.monotonic(), machine_busy(), own_cpu()

    def tick(self) -> None:
        now = time.monotonic()
        if now - self.last[0] < self.interval:
            return
        sample = self._sample()
        (t0, (busy0, total0), own0), (t1, (busy1, total1), own1) = self.last, sample
        self.last = sample
        if total1 <= total0:
            return
        busy_cores = (busy1 - busy0) / (total1 - total0) * self.machine_cores
        others = max(0.0, busy_cores - (own1 - own0) / (t1 - t0))
        threads = max(1, min(self.cores, round(self.cores - others)))
        if threads != torch.get_num_threads():
            set_threads(threads)

    def stop(self) -> None:
        global _last
        _last = self.last  # the next run in this process looks from here
        set_threads(self.before)


def set_threads(n: int) -> None:
    global _governed
    _governed = n
    torch.set_num_threads(n)
