"""Data-parallel training and evaluation across processes with ``torch.distributed``.

Launched by ``torchrun`` (``torchrun --nproc-per-node 4 -m ppl_vae train ...``), every process
joins one process group (gloo on the CPU, NCCL for CUDA tensors) and runs the same program on its
shard of the data; launched plainly, :func:`world` is the single process and nothing here runs.

One step is the single-process step over the global mini-batch x_B, B = ``--batch-size``: every
rank draws the same (seed, epoch) permutation, takes its contiguous shard x_{B_r} of each batch,
computes its loss L_r and gradients g_r, and one all-reduce of one flat buffer sums

    g = Σ_r w_r g_r,   L = Σ_r w_r L_r,   w_r = 1, or |B_r| / B for a model whose data plate is
    subsampled (``pyro.plate("data", N, subsample=idx)``: each rank's Pyro scales its loss by N/|B_r|),

so g is the gradient of the loss of the whole batch, up to float rounding, and every rank's Adam
takes the same step. The loss, the gradients' presence and the ranks' stop requests travel in the
same buffer, so the numerical guard's verdict and a SIGINT/SIGTERM are agreed by every rank at the
same step. Particles come from per-rank random streams: rank 0 keeps the single-process stream,
rank r > 0 is seeded by (seed, r), so a 1-process run is unchanged.

A rank that dies closes its sockets and the others' next collective fails at once; one that hangs
is given up after :data:`TIMEOUT_S` seconds (``PPL_VAE_DIST_TIMEOUT``). Either way the others stop
with :class:`PeerLost`, and the last checkpoint stands.
"""

from __future__ import annotations

import datetime
import os
import re
import signal
import sys
from dataclasses import dataclass

import pyro
import torch
import torch.distributed as dist

from ppl_vae.errors import UsageError

TIMEOUT_S = float(os.environ.get("PPL_VAE_DIST_TIMEOUT", 300))
_STOPS = (signal.SIGINT, signal.SIGTERM)  # flags in the step's buffer, later wins when both arrive


class PeerLost(Exception):
    """Another process of the job died or stopped answering; the CLI exits with :attr:`exit_code`."""

    exit_code = 4


def launched() -> bool:
    """Whether torchrun (or the like) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@dataclass(frozen=True)
class World:
    """This process's place in the job: ``rank`` of ``size`` processes (rank 0 writes the files)."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.size > 1

    def rows(self, n: int) -> slice:
        """This rank's contiguous share of n rows (the first ranks take one more when n % size ≠ 0)."""
        base, extra = divmod(n, self.size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))

    def shard(self, idx: torch.Tensor) -> torch.Tensor:
        """This rank's part of a global mini-batch of indices."""
        return idx[self.rows(idx.shape[0])]

    def sum_step(self, params, losses: tuple, weight: float, signum: int | None) -> tuple[tuple, int | None]:
        """Σ_r w_r · (gradients, losses) over the ranks in one all-reduce, and the stop signal any rank got.

        ``params``: the parameters the step touched (the same on every rank); their ``.grad`` become
        the sums, None where no rank had one. ``losses``: 0-d tensors or floats. Returns (the summed
        losses as 0-d tensors, the signal to stop on or None)."""
        params = sorted(params, key=pyro.get_param_store().param_name)
        like = params[0] if params else torch.zeros(())
        grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
        values = [torch.as_tensor(v, dtype=like.dtype, device=like.device).reshape(1) for v in losses]
        flags = torch.tensor([p.grad is not None for p in params] + [signum == s for s in _STOPS],
                             dtype=like.dtype, device=like.device)
        flat = torch.cat([g.reshape(-1) for g in grads] + values).mul_(weight)
        flat = torch.cat([flat, flags])
        self._collective(dist.all_reduce, flat)
        parts = flat.split([p.numel() for p in params] + [1] * len(values) + [flags.numel()])
        for p, g, present in zip(params, parts, parts[-1].tolist()):
            p.grad = g.view_as(p) if present > 0 else None
        summed = tuple(v.reshape(()) for v in parts[len(params):len(params) + len(values)])
        return summed, _agreed(parts[-1][len(params):].tolist())

    def agree_stop(self, signum: int | None) -> int | None:
        """The stop signal any rank got (between epochs, where no step carries the flags)."""
        if not self.parallel:
            return signum
        flags = torch.tensor([float(signum == s) for s in _STOPS], device=self._device())
        self._collective(dist.all_reduce, flags)
        return _agreed(flags.tolist())

    def gather_rows(self, values: torch.Tensor) -> torch.Tensor:
        """The ranks' per-point results [n_r, ...], in rank order: the whole [n, ...] on every rank."""
        if not self.parallel:
            return values
        sizes = [None] * self.size
        self._collective(dist.all_gather_object, sizes, int(values.shape[0]))
        padded = values.new_zeros((max(sizes), *values.shape[1:]))
        padded[:values.shape[0]] = values
        parts = [torch.empty_like(padded) for _ in range(self.size)]
        self._collective(dist.all_gather, parts, padded)
        return torch.cat([part[:n] for part, n in zip(parts, sizes)])

    def gather_objects(self, value) -> list | None:
        """Every rank's ``value`` on rank 0 (a list in rank order), None elsewhere."""
        if not self.parallel:
            return [value]
        out = [None] * self.size if self.main else None
        self._collective(dist.gather_object, value, out, dst=0)
        return out

    def broadcast_params(self) -> None:
        """Every parameter in Pyro's store as rank 0 has it, so that all ranks start alike."""
        if not self.parallel:
            return
        with torch.no_grad():
            for _, p in sorted(pyro.get_param_store().named_parameters()):
                self._collective(dist.broadcast, p.data, 0)

    def barrier(self) -> None:
        if self.parallel:
            self._collective(dist.barrier)

    def _device(self) -> torch.device:
        backend = dist.get_backend()
        return torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")

    def _collective(self, op, *args, **kwargs):
        try:
            return op(*args, **kwargs)
        except RuntimeError as e:  # gloo/NCCL: a peer's sockets closed, or the timeout passed
            what = re.sub(r"^\[[^\]]*\]\s*", "", str(e).strip().splitlines()[0] if str(e).strip() else "")
            raise PeerLost(f"rank {self.rank} lost contact with another process of this job ({what[:120]}): it died "
                           f"or did not answer within {TIMEOUT_S:g} s; run the job again (a training run continues "
                           f"from its last checkpoint with --resume).") from None


SINGLE = World()


def _agreed(counts: list[float]) -> int | None:
    """The signal to stop on, from the ranks' summed flags: SIGTERM over SIGINT, None if neither."""
    return next((int(s) for s, n in reversed(list(zip(_STOPS, counts))) if n > 0), None)


def world() -> World:
    """This process's :class:`World`: joins the process group torchrun set up (once), else the single process."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    if not launched():
        return SINGLE
    if not dist.is_available():
        raise UsageError("this torch build has no torch.distributed, so it cannot run under torchrun; run the "
                         "command in one process.")
    if not os.environ.get("MASTER_ADDR"):
        raise UsageError("WORLD_SIZE is set but MASTER_ADDR is not; start the job with torchrun, which sets both.")
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    timeout = datetime.timedelta(seconds=TIMEOUT_S)
    try:
        dist.init_process_group(backend, timeout=timeout)
    except (RuntimeError, ValueError) as e:
        raise UsageError(f"could not join the torchrun job at {os.environ['MASTER_ADDR']}:"
                         f"{os.environ.get('MASTER_PORT')} ({str(e).splitlines()[0][:160]}); check that every "
                         f"node can reach the rendezvous endpoint.") from None
    return World(dist.get_rank(), dist.get_world_size())


def leave(code: int) -> int:
    """End this rank of a torchrun job with exit status ``code``, once every rank is done (a bounded barrier);
    return ``code`` where no process group was joined.

    The barrier keeps rank 0, which hosts the rendezvous store, alive until the others no longer need it. The
    process then ends at once (``os._exit``, after flushing stdout and stderr; every file is closed by now), as
    a survivor of a lost peer does: an ordinary exit runs the C++ teardown of gloo's threads, which now and then
    aborts a rank (SIGABRT, "terminate called without an active exception") whose peers have already gone.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return code
    try:
        dist.monitored_barrier(timeout=datetime.timedelta(seconds=min(TIMEOUT_S, 30)))
    except RuntimeError:
        pass  # a peer that is gone needs no waiting for
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def local_rank() -> int:
    """The process's index on its machine (torchrun's LOCAL_RANK), its GPU under CUDA."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank r's own random stream (particles), r ≥ 1; rank 0 keeps the run's stream."""
    return ((seed * 1_000_003 + rank) * 7 + 5) % 2**32  # numpy takes 32-bit seeds
