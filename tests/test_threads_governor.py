"""The thread governor: torch's threads follow the cores other processes leave free, unless chosen."""

import pytest
import torch

from ppl_vae import fit, threads
from helpers import pair


@pytest.fixture
def two_cores(monkeypatch):
    """A 2-core machine on which nobody chose a thread count; torch's count put back afterwards."""
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "_fixed", False)
    monkeypatch.setattr(threads, "_DEFAULT", 2)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(threads, "INTERVAL", 0.0)
    monkeypatch.setattr(threads, "_last", None)  # no look from before the test
    torch.set_num_threads(2)
    yield monkeypatch
    torch.set_num_threads(before)


class Machine:
    """/proc/stat and this process's CPU time as a 2-core machine's would read: :meth:`second` lets a
    second pass in which other processes keep ``others`` cores busy and this one uses one core."""

    def __init__(self, monkeypatch):
        self.t = self.busy = self.own = 0.0
        monkeypatch.setattr(threads.time, "monotonic", lambda: self.t)
        monkeypatch.setattr(threads, "machine_busy", lambda: (self.busy, self.t * 200))  # 100 ticks per core-second
        monkeypatch.setattr(threads, "own_cpu", lambda: self.own)

    def second(self, others: float) -> None:
        self.t += 1.0
        self.busy += (others + 1.0) * 100
        self.own += 1.0


def test_threads_step_down_beside_a_busy_process_and_back_up_when_it_ends(two_cores):
    machine = Machine(two_cores)
    governor = threads.Governor.start()
    seen = []
    for others in (1.0, 1.0, 1.0, 0.0, 0.0):  # another process on one core for three seconds
        machine.second(others)
        governor.tick()
        seen.append(torch.get_num_threads())
    assert seen == [1, 1, 1, 2, 2], seen
    governor.stop()


def test_a_chosen_count_is_left_alone(two_cores):
    torch.set_num_threads(1)  # chosen by the user before training
    assert threads.Governor.start() is None
    torch.set_num_threads(2)
    threads.fix(2)  # --threads 2
    assert threads.Governor.start() is None


def test_fit_governs_its_threads_and_gives_the_count_back(digits, two_cores):
    machine = Machine(two_cores)
    seen = []
    model, guide = pair(digits)

    def model_fn(x, idx=None):
        machine.second(1.5)  # others keep 1.5 cores busy throughout
        seen.append(torch.get_num_threads())
        return model.model(x, idx)

    fit(model_fn, guide.guide, digits, epochs=1, progress=False, jit=False)
    assert seen[-1] == 1 and torch.get_num_threads() == 2


def test_the_thread_count_does_not_change_the_numbers(digits):
    """Why the governor may change the count mid-run: on this torch build the parameters a run ends
    with are bit-identical at 1 and at 2 threads (were they not, a run beside others would differ)."""
    before = torch.get_num_threads()
    ends = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            ends.append(fit(*pair(digits), digits, epochs=2, progress=False).model.state_dict())
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(ends[0][k], ends[1][k]) for k in ends[0])
