"""Training a model/guide pair by stochastic variational inference.

``fit`` maximizes a bound L(θ, φ) ≤ log p_θ(x) — by default the ELBO,
L(θ, φ) = E_q[log p_θ(x | z)] − KL(q_φ(z | x) ‖ p(z)) — with ``pyro.infer.SVI`` and
``pyro.optim.Adam``, one mini-batch per step. Each epoch it records the training bound (the
running mean of the step estimates) and the test bound, in nats per data point, to
``metrics.jsonl``, and writes a checkpoint atomically, so ``fit(..., resume=True)`` (or
``ppl-vae train --resume RUN_DIR``) continues where a run stopped and, on the CPU, ends with
the same parameters as a run that never stopped.
"""

from __future__ import annotations

import os
import time

import pyro
import pyro.optim
import torch
from pyro import poutine
from pyro.infer import SVI
from pyro.params.param_store import normalize_param_name
from tqdm.auto import tqdm

from . import checkpoint, objectives
from .device import resolve_device
from .data import Dataset, batches, epoch_generator, steps_per_epoch
from .errors import UsageError
from .pair import as_pyro_callable, owning_module, with_idx
from .rundir import CONFIG, METRICS, append_jsonl, read_jsonl, write_json, write_jsonl

def lr_at(epoch: int, lr: float, milestones=(), gamma: float = 0.1) -> float:
    """Step schedule: lr · γ^(number of milestones ≤ epoch), epochs counted from 0."""
    return lr * gamma ** sum(epoch >= m for m in milestones)


def fit(model, guide, data, objective="elbo", *, epochs: int = 20, batch_size: int = 100, lr: float = 1e-3,
        lr_milestones=(), lr_gamma: float = 0.1, particles: int = 1, seed: int = 0, device="auto",
        out: str | None = None, resume: bool = False, config: dict | None = None, progress: bool = True,
        drop_last: bool = True, schedule: str = "joint", e_steps: int = 1) -> list[dict]:
    """Train ``model`` and ``guide`` on ``data`` with ``objective``; returns the per-epoch metrics.

    ``model``/``guide``: modules with ``.model``/``.guide`` methods, or plain Pyro callables.
    ``data``: a :class:`~ppl_vae.data.Dataset`, or a tensor [N, D] of training data.
    ``objective``: a name from :data:`ppl_vae.objectives.OBJECTIVES` or an ``Objective``.
    ``out``: run directory for ``config.json``, ``metrics.jsonl`` and ``checkpoint.pt``.
    ``resume``: continue the run in ``out`` from its checkpoint, up to ``epochs`` in total.
    ``schedule``: ``joint`` (one SVI step on θ and φ per batch) or ``vem`` (variational EM:
    ``e_steps`` steps on the guide, then one on the model; :mod:`ppl_vae.vem`).

    Pyro's global parameter store is cleared first; afterwards it (and the modules) hold the
    trained parameters.
    """
    trainer_class, options = Trainer, {}
    if schedule == "vem":
        from .vem import VEMTrainer  # vem builds on this module

        trainer_class, options = VEMTrainer, {"e_steps": e_steps}
    trainer = trainer_class(model, guide, data, objective, epochs=epochs, batch_size=batch_size, lr=lr,
                            lr_milestones=tuple(lr_milestones), lr_gamma=lr_gamma, particles=particles, seed=seed,
                            device=device, out=out, config=config, progress=progress, drop_last=drop_last,
                            **options)
    if resume:
        trainer.restore()
    elif out is not None:
        trainer.start_run_dir()
    return trainer.run()


def adam(params, **kwargs) -> torch.optim.Optimizer:
    """torch's Adam for one parameter; SparseAdam when its gradient is sparse (a per-data-point
    table, ``guides/local.py``), which moves only the rows a step's gradient holds."""
    sparse = params[0].grad is not None and params[0].grad.is_sparse
    return (torch.optim.SparseAdam if sparse else torch.optim.Adam)(params, **kwargs)


class Trainer:
    """One SVI run: its set-up, the epoch loop, the metrics and the checkpoints."""

    def __init__(self, model, guide, data, objective, *, epochs, batch_size, lr, lr_milestones, lr_gamma,
                 particles, seed, device, out, config, progress, drop_last):
        if epochs < 0 or batch_size < 1 or lr <= 0:
            raise UsageError("epochs must be ≥ 0, batch size ≥ 1 and learning rate > 0.")
        self.device = resolve_device(device)
        self.modules = {role: owning_module(m) for role, m in (("model", model), ("guide", guide))}
        for module in self.modules.values():
            if module is not None:
                module.to(self.device)
        self.model = with_idx(as_pyro_callable(model, "model"))
        self.guide = with_idx(as_pyro_callable(guide, "guide"))
        if not isinstance(data, Dataset):
            data = Dataset.from_tensors(data)
        self.data = data.to(self.device)
        self.objective = objective if isinstance(objective, objectives.Objective) else objectives.make(
            objective, particles=particles)
        self.epochs, self.batch_size, self.seed, self.drop_last = epochs, batch_size, seed, drop_last
        self.schedule = dict(lr=lr, milestones=lr_milestones, gamma=lr_gamma)
        self.out, self.progress = out, progress
        self.config = {**(config or {}), "objective": self.objective.name, "particles": self.objective.particles,
                       "epochs": epochs, "batch_size": batch_size, "lr": lr, "lr_milestones": list(lr_milestones),
                       "lr_gamma": lr_gamma, "seed": seed, "drop_last": drop_last}
        self.epoch, self.step = 0, 0  # epochs and steps completed
        self.history: list[dict] = []

        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        self.lr = lr_at(0, **self.schedule)
        self.optim = pyro.optim.PyroOptim(adam, lambda name: {"lr": self.lr * self.lr_factor(name)})
        self.svi = SVI(self.model, self.guide, self.optim, loss=self.objective.loss)

    # -- run directory -------------------------------------------------------------------

    def path(self, name: str) -> str:
        return os.path.join(self.out, name)

    def start_run_dir(self) -> None:
        if os.path.exists(self.path(checkpoint.NAME)) or os.path.exists(self.path(METRICS)):
            raise UsageError(f"{self.out} already holds a run; continue it with --resume {self.out} "
                             f"or choose another --out.")
        os.makedirs(self.out, exist_ok=True)
        write_json(self.path(CONFIG), self.config)

    def restore(self) -> None:
        """Load the run's checkpoint: parameters, optimizer, RNG, and the epoch to resume at."""
        if self.out is None:
            raise UsageError("resuming needs the run directory (--resume RUN_DIR).")
        state = checkpoint.load(self.path(checkpoint.NAME), map_location=self.device)
        for role, module in self.modules.items():
            if module is not None and role in state["modules"]:
                module.load_state_dict(state["modules"][role])
        self._create_params()
        store = dict(pyro.get_param_store().named_parameters())
        if set(store) != set(state["params"]):
            raise UsageError(f"the checkpoint in {self.out} holds parameters {sorted(state['params'])[:3]}... "
                             f"that do not match this model and guide; resume with the same configuration.")
        with torch.no_grad():
            for name, value in state["params"].items():
                store[name].copy_(value)
        self.optim.set_state(state["optim"])
        checkpoint.set_rng_state(state["rng"])
        self.epoch, self.step = state["epoch"], state["step"]
        self.history = [m for m in read_jsonl(self.path(METRICS)) if m["epoch"] <= self.epoch]
        write_jsonl(self.path(METRICS), self.history)  # drop epochs the checkpoint never saw

    def _create_params(self) -> None:
        """Run guide and model once so every Pyro parameter exists with its constraint."""
        x = self.data.x_train[:2]
        idx = torch.arange(x.shape[0], device=self.device)
        with torch.no_grad():
            guide_tr = poutine.trace(self.guide).get_trace(x, idx)
            poutine.replay(self.model, trace=guide_tr)(x, idx)

    def save(self) -> None:
        params = {name: p.detach().clone() for name, p in pyro.get_param_store().named_parameters()}
        modules = {role: m.state_dict() for role, m in self.modules.items() if m is not None}
        checkpoint.save(self.path(checkpoint.NAME), {
            "epoch": self.epoch, "step": self.step, "params": params, "modules": modules,
            "optim": self.optim.get_state(), "rng": checkpoint.rng_state(), "config": self.config})

    # -- training ------------------------------------------------------------------------

    def set_lr(self, lr: float) -> None:
        self.lr = lr
        store = pyro.get_param_store()
        for param, optimizer in self.optim.optim_objs.items():
            for group in optimizer.param_groups:
                group["lr"] = lr * self.lr_factor(normalize_param_name(store.param_name(param)))

    def lr_factor(self, name: str) -> float:
        """The objective's learning-rate factor for a parameter, times the guide's if it has one.

        ``name`` as ``pyro.optim`` passes it to per-parameter options: ``module.param``."""
        guide_factor = getattr(self.modules["guide"], "lr_factor", None)
        return self.objective.lr_factor(name) * (guide_factor(name) if guide_factor else 1.0)

    def train_step(self, x: torch.Tensor, idx: torch.Tensor) -> float:
        """One SVI step on the mini-batch x = data[idx]; returns the loss, −Σ bound."""
        return self.svi.step(x, idx)

    def train_epoch(self, bar) -> float:
        """One pass over the training set; returns the mean training bound per data point."""
        n = self.data.x_train.shape[0]
        x = self.data.train_epoch(self.epoch)
        order = epoch_generator(self.seed, self.epoch, self.device, "permute")
        total, count = 0.0, 0
        for idx in batches(n, self.batch_size, order, device=self.device, drop_last=self.drop_last):
            total += self.train_step(x[idx], idx)
            count += idx.numel()
            self.step += 1
            bar.update()
        return -total / count

    def test_bound(self) -> float | None:
        if self.data.x_test is None:
            return None
        per_point_guide = getattr(self.modules["guide"], "test_bound", None)
        if per_point_guide is not None:  # a non-amortized guide has no q for test points: it fits them
            return per_point_guide(self.objective, self.model, self.data.x_test).mean().item()
        return self.objective.test_bound(self.model, self.guide, self.data.x_test).mean().item()

    def run(self) -> list[dict]:
        per_epoch = steps_per_epoch(self.data.x_train.shape[0], self.batch_size, self.drop_last)
        writer = tensorboard_writer(self.out)
        with tqdm(total=self.epochs * per_epoch, initial=self.epoch * per_epoch, disable=not self.progress,
                  unit="step", desc=self.objective.name, dynamic_ncols=True) as bar:
            while self.epoch < self.epochs:
                self.set_lr(lr_at(self.epoch, **self.schedule))
                start = time.perf_counter()
                train_bound = self.train_epoch(bar)
                seconds = time.perf_counter() - start
                self.epoch += 1
                metrics = {"epoch": self.epoch, "step": self.step, "train_bound": train_bound,
                           "test_bound": self.test_bound(), "seconds": seconds, "lr": self.lr}
                self.history.append(metrics)
                bar.set_postfix(train=f"{train_bound:.2f}", test=f"{metrics['test_bound'] or float('nan'):.2f}")
                if self.out is not None:
                    append_jsonl(self.path(METRICS), metrics)
                    self.save()
                if writer is not None:
                    for key in ("train_bound", "test_bound", "lr"):
                        if metrics[key] is not None:
                            writer.add_scalar(key, metrics[key], self.epoch)
        if writer is not None:
            writer.close()
        return self.history


def tensorboard_writer(out):
    """A TensorBoard ``SummaryWriter`` on ``out/tb`` when tensorboard is installed, else None."""
    if out is None:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(os.path.join(out, "tb"))
