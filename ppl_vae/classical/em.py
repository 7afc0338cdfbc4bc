"""Maximum likelihood without gradients: the closed form and EM, into the same run directory as ``fit``.

For models with an exact log p(x) and closed-form updates (``models/ppca.py``,
``models/gmm.py``) the maximum-likelihood estimate needs no stochastic optimization:

- ``closed-form`` (PPCA): ``model.fit_closed_form(x)``, one "epoch";
- ``em``: ``model.init_em(x, generator)`` then one ``model.em_step(x)`` per epoch, each of
  which never decreases log p(x) (Dempster et al. 1977), until the training log-likelihood
  per data point rises by less than ``tol`` or ``epochs`` iterations have run.

The run directory is the one ``fit`` writes: ``config.json``, ``metrics.jsonl`` with the same
keys (epoch = iteration, step = iteration, train_bound and test_bound the exact mean
log p(x) on the training and test sets, seconds, lr = None) and ``checkpoint.pt`` with the
model and guide, so ``load_run`` and ``ppl-vae evaluate`` read it like any other run. A
guide with ``set_exact`` (the linear guide of PPCA) is set to the exact posterior, so the
importance-sampled log p(x) of ``ppl-vae evaluate`` equals the exact one.

As in ``fit``, nothing is lost: EM writes its checkpoint after every iteration, so SIGKILL
costs at most the iteration in progress; SIGINT and SIGTERM end the loop after the current
iteration with :class:`~ppl_vae.inference.trainer.Interrupted` (exit 130 / 143), and ``resume=True``
continues from the checkpoint.

Dequantized data: EM sees one draw of the noise, the training tensor of epoch 0.
"""

from __future__ import annotations

import os
import time

import torch
from tqdm.auto import tqdm

from ppl_vae.io import checkpoint
from ppl_vae.errors import UsageError
from ppl_vae.io.rundir import CONFIG, METRICS, append_jsonl, read_jsonl, write_json, write_jsonl
from ppl_vae.inference.trainer import interrupted, stop_requests

DEFAULT_TOL = 1e-4  # nats per data point


def fit(model, guide, data, method: str = "em", *, epochs: int = 100, tol: float = DEFAULT_TOL, seed: int = 0,
        out: str | None = None, resume: bool = False, config: dict | None = None,
        progress: bool = True) -> list[dict]:
    """Fit ``model`` by ``method`` ("closed-form" or "em"); returns the metrics rows.

    ``data``: a :class:`~ppl_vae.data.Dataset` (fit to ``data.train_epoch(0)``, tested on
    ``data.x_test``) or a tensor [N, D] of training data, used in its own dtype.
    """
    if method not in ("closed-form", "em"):
        raise UsageError(f"unknown method {method!r} for a closed-form or EM fit; choose closed-form or em.")
    x, x_test = (data, None) if torch.is_tensor(data) else (data.train_epoch(0), data.x_test)
    config = {**(config or {}), "method": method, "epochs": epochs, "tol": tol, "seed": seed}
    history, start_epoch = [], 0
    if resume:
        history, start_epoch = _restore(model, guide, out, method)
    elif out is not None:
        _start_run_dir(out, config)

    def record(epoch: int, seconds: float) -> dict:
        with torch.no_grad():
            test = model.log_marginal(x_test).mean().item() if x_test is not None else None
            row = {"epoch": epoch, "step": epoch, "train_bound": model.log_marginal(x).mean().item(),
                   "test_bound": test, "seconds": seconds, "lr": None}
        history.append(row)
        if out is not None:
            append_jsonl(os.path.join(out, METRICS), row)
        return row

    start = time.perf_counter()
    if method == "closed-form":
        model.fit_closed_form(x)
        record(1, time.perf_counter() - start)
    else:
        if not resume:
            model.init_em(x, torch.Generator(device=x.device).manual_seed(seed))
        previous = history[-1]["train_bound"] if history else -float("inf")
        with stop_requests() as request, tqdm(total=epochs, initial=start_epoch, disable=progress is not True,
                                              unit="iter", desc="em", dynamic_ncols=True) as bar:
            for epoch in range(start_epoch + 1, epochs + 1):
                model.em_step(x)
                row = record(epoch, time.perf_counter() - start)
                if out is not None:  # each iteration is checkpointed, so a kill loses at most one
                    _save(out, model, guide, epoch, config)
                bar.update()
                bar.set_postfix(train=f"{row['train_bound']:.3f}")
                if request.signum is not None:
                    raise interrupted(request.signum, out, f"after EM iteration {epoch}")
                if row["train_bound"] - previous < tol:
                    break
                previous = row["train_bound"]
                start = time.perf_counter()  # the log-likelihoods above are reporting, not fitting
    if hasattr(guide, "set_exact"):
        guide.set_exact(model)
    if out is not None and history:
        _save(out, model, guide, history[-1]["epoch"], config)
    return history


def _start_run_dir(out: str, config: dict) -> None:
    if os.path.exists(os.path.join(out, checkpoint.NAME)) or os.path.exists(os.path.join(out, METRICS)):
        raise UsageError(f"{out} already holds a run; continue it with --resume {out} or choose another --out.")
    os.makedirs(out, exist_ok=True)
    write_json(os.path.join(out, CONFIG), config)


def _restore(model, guide, out: str, method: str):
    """(metrics so far, iterations done) of the EM run in ``out``; its parameters go into the modules."""
    if method != "em":
        raise UsageError(f"a {method} fit is complete after one step; start a new run instead of --resume.")
    state = checkpoint.load(os.path.join(out, checkpoint.NAME), map_location=next(model.parameters()).device)
    model.load_state_dict(state["modules"]["model"])
    guide.load_state_dict(state["modules"]["guide"])
    history = [m for m in read_jsonl(os.path.join(out, METRICS)) if m["epoch"] <= state["epoch"]]
    write_jsonl(os.path.join(out, METRICS), history)  # drop iterations the checkpoint never saw
    return history, state["epoch"]


def _save(out: str, model, guide, epoch: int, config: dict) -> None:
    """A checkpoint in ``fit``'s format; no Pyro parameters or optimizer state, as nothing was optimized."""
    checkpoint.save(os.path.join(out, checkpoint.NAME), {
        "epoch": epoch, "step": epoch, "params": {}, "modules": {"model": model.state_dict(),
                                                               "guide": guide.state_dict()},
        "optim": {}, "rng": checkpoint.rng_state(), "config": config})
