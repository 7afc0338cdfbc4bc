"""What a training run reports, each output in one place: the progress bar (or a log line per
epoch), ``metrics.jsonl`` and TensorBoard. The trainer calls ``step()`` after every step and
``epoch_end(metrics)`` after every epoch, before the epoch's checkpoint, so a kill can leave a
metrics row that the checkpoint never saw (dropped on resume) but never a checkpoint without its row.
"""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm

from ppl_vae.io.rundir import METRICS, append_jsonl


class Progress:
    """``mode`` True: a tqdm bar over steps; ``"log"``: one stderr line per epoch; False: nothing."""

    def __init__(self, mode, total_steps: int, done_steps: int, epochs: int, name: str):
        self.mode, self.epochs, self.name = mode, epochs, name
        self.bar = tqdm(total=total_steps, initial=done_steps, disable=mode is not True, unit="step", desc=name,
                        dynamic_ncols=True)

    def step(self) -> None:
        self.bar.update()

    def rewind(self, step: int) -> None:
        """Back to ``step`` after a rollback."""
        self.bar.n = step
        self.bar.refresh()

    def epoch_end(self, metrics: dict) -> None:
        test = "–" if metrics["test_bound"] is None else f"{metrics['test_bound']:.2f}"
        self.bar.set_postfix(train=f"{metrics['train_bound']:.2f}", test=test)
        if self.mode == "log":  # for logs and batch jobs, where a bar is noise
            print(f"epoch {metrics['epoch']}/{self.epochs} ({self.name}): train {metrics['train_bound']:.2f}, "
                  f"test {test}, {metrics['seconds']:.2f} s", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.close()


class MetricsFile:
    """One JSON object per epoch in ``out/metrics.jsonl``."""

    def __init__(self, out: str):
        self.path = os.path.join(out, METRICS)

    def epoch_end(self, metrics: dict) -> None:
        append_jsonl(self.path, metrics)

    def close(self) -> None:
        pass


class TensorBoard:
    """The bounds and learning rate as TensorBoard scalars in ``out/tb``."""

    def __init__(self, writer):
        self.writer = writer

    def epoch_end(self, metrics: dict) -> None:
        for key in ("train_bound", "test_bound", "lr"):
            if metrics[key] is not None:
                self.writer.add_scalar(key, metrics[key], metrics["epoch"])

    def close(self) -> None:
        self.writer.close()


def run_files(out: str | None) -> list:
    """The outputs written into a run directory: metrics.jsonl, and TensorBoard when it is installed."""
    if out is None:
        return []
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return [MetricsFile(out)]
    return [MetricsFile(out), TensorBoard(SummaryWriter(os.path.join(out, "tb")))]
