"""Training a model/guide pair by stochastic variational inference.

``fit`` maximizes a bound L(θ, φ) ≤ log p_θ(x) — by default the ELBO,
L(θ, φ) = E_q[log p_θ(x | z)] − KL(q_φ(z | x) ‖ p(z)) — by the objective's ``loss_and_grads``
and one torch Adam over every parameter (:mod:`ppl_vae.inference.optim`), one mini-batch per step. Each epoch it records the training bound (the
running mean of the step estimates) and the test bound, in nats per data point, to
``metrics.jsonl``, and writes a checkpoint atomically, so ``fit(..., resume=True)`` (or
``ppl-vae train --resume RUN_DIR``) continues where a run stopped and, on the CPU, ends with
the same parameters as a run that never stopped.

Nothing is lost when a run stops early:

- A checkpoint is written when training starts, after every epoch and, with
  ``checkpoint_every=N``, every N steps; it holds the position inside the epoch (steps taken,
  running sums of the training bound), so a run resumes mid-epoch. The data a step sees is a
  pure function of (seed, epoch, step) (see :mod:`ppl_vae.data`) and the checkpoint carries
  the RNG states, so the resumed run is bit-identical on the CPU.
- SIGINT and SIGTERM only set a flag; between steps the trainer writes a checkpoint and
  raises :class:`Interrupted` (the CLI exits with 130 / 143). A second signal abandons the
  current step at once, leaving the previous checkpoint. SIGKILL loses the steps since the
  last checkpoint, which is replaced atomically, never half-written.
- A step whose loss or gradient is not finite moves no parameter (:class:`GuardedSVI`); the
  trainer rolls back to the last checkpoint, multiplies the learning rate by
  ``nan_lr_factor`` (½) and goes on; after ``nan_retries`` (1) such rollbacks without a new
  checkpoint in between it raises :class:`Diverged` and leaves the last checkpoint intact.

Under torchrun (:mod:`ppl_vae.parallel`) the same loop runs data-parallel: each rank steps on its
shard of every global mini-batch, one all-reduce per step sums the gradients, the loss and the
stop requests, and rank 0 alone writes the files and shows progress.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import pyro
import torch
from tqdm.auto import tqdm

from ppl_vae import parallel, spec
from ppl_vae.memory import keep_freed_memory
from ppl_vae.threads import Governor
from ppl_vae.io import checkpoint

from ppl_vae.inference import objectives
from ppl_vae.device import resolve_device
from ppl_vae.data import Dataset, Partial, batch_inputs, batches, epoch_generator, epoch_steps, given_rows
from ppl_vae.errors import UsageError
from ppl_vae.config import CONFIG_VERSION, Config, TrainingConfig, default
from ppl_vae.inference.checks import prepared, sharding_refusal
from ppl_vae.inference.validation import valid_data
from ppl_vae.inference.record import recorded
from ppl_vae.inference.guard import GuardedSVI, NonFinite, invalid_values_as_faults
from ppl_vae.inference.extras import WithLosses
from ppl_vae.inference.optim import Optimizer, takes_lr
from ppl_vae.inference.vem import VEMStep
from ppl_vae.inference.weights import data_size, describe_scale
from ppl_vae.pair import Pair, callables, eval_mode, named_inputs, owning_module, pair_of, unused_input
from ppl_vae.inference.outputs import Progress, run_files
from ppl_vae.io.rundir import RunDirectory
from ppl_vae.text import count


class Diverged(Exception):
    """Training stopped after repeated non-finite steps; the CLI exits with :attr:`exit_code`."""

    exit_code = 3


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped training; the CLI exits with 128 + the signal's number."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


class StopRequest:
    """The first SIGINT/SIGTERM caught by :func:`stop_requests`: ``signum``, or None."""

    signum: int | None = None


@contextlib.contextmanager
def stop_requests():
    """While the block runs, SIGINT and SIGTERM only set ``request.signum``, so the loop can
    checkpoint between steps; a second signal raises :class:`Interrupted` at once."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request  # Python delivers signals to the main thread only
        return

    def handler(signum, frame):
        if request.signum is not None:
            raise Interrupted(f"second {signal.Signals(signum).name}: abandoned the step in progress; "
                              f"the last checkpoint stays as it was.", signum)
        request.signum = signum

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for s, h in previous.items():
            signal.signal(s, signal.SIG_DFL if h is None else h)


def interrupted(signum: int, out: str | None, where: str) -> Interrupted:
    """The :class:`Interrupted` that ends a loop stopped by ``signum`` ``where``, its checkpoint in ``out``."""
    name = signal.Signals(signum).name
    if out is None:
        return Interrupted(f"stopped by {name} {where}; no run directory was given, so nothing was saved.", signum)
    return Interrupted(f"stopped by {name} {where}; checkpoint saved, continue with "
                       f"`ppl-vae train --resume {out}`.", signum)


def lr_at(epoch: int, lr: float, milestones=(), gamma: float = 0.1) -> float:
    """Step schedule: lr · γ^(number of milestones ≤ epoch), epochs counted from 0."""
    return lr * gamma ** sum(epoch >= m for m in milestones)


def fit(model, guide=None, data=None, objective="elbo", *, particles: int | None = None, device="auto",
        out: str | None = None, resume: bool = False, config: Config | None = None, progress: bool = True,
        warm_start: bool = False, jit: bool | None = None, **training) -> "History":
    """Train ``model`` and ``guide`` on ``data`` with ``objective``; returns the per-epoch metrics, a
    :class:`History` that also holds the trained ``model`` and ``guide``.
    ``fit(make_pair, data, objective, ...)`` builds the pair as ``make_pair(data) -> (model, guide)``
    after seeding, so each run starts from its own initial weights.

    ``model``/``guide``: modules with ``.model``/``.guide`` methods, or plain Pyro callables.
    ``data``: a :class:`~ppl_vae.data.Dataset`, a tensor [N, ...] of training data, or a mapping of
    named tensors (:meth:`~ppl_vae.data.Dataset.from_tensors`).
    ``objective``: a name from :data:`ppl_vae.inference.objectives.OBJECTIVES` (with
    ``particles`` K per data point) or an ``Objective``.
    ``training``: the settings of :class:`~ppl_vae.config.TrainingConfig`, with its defaults —
    ``epochs``, ``batch_size``, ``lr``, ``lr_milestones``, ``lr_gamma``, ``drop_last``, ``seed``,
    ``checkpoint_every`` (also checkpoint every N steps), ``nan_retries`` and ``nan_lr_factor``
    (how often a non-finite step may roll training back to the last checkpoint, and the factor
    applied to the learning rate each time), ``schedule`` (``joint``: one SVI step on θ and φ
    per batch; ``vem``: variational EM, ``e_steps`` steps on the guide, then one on the model),
    ``validate`` (Pyro's distribution checks at every step; by default they run in one pass over
    the data before training, and a numerical fault is diagnosed with them).
    ``jit``: train with the objective's step recorded once as a graph of torch ops and replayed, where the
    run allows it (:mod:`ppl_vae.inference.record`), else eagerly with a line saying why; default: the config's, True.
    ``out``: run directory for ``config.json``, ``metrics.jsonl`` and ``checkpoint.pt``;
    ``config``: the whole run's :class:`~ppl_vae.config.Config`, recorded there (the CLI's).
    ``resume``: continue the run in ``out`` from its checkpoint, up to ``epochs`` in total.
    ``warm_start``: train modules that an earlier ``fit`` already trained, from their trained
    weights; without it such modules are refused, since a second objective would silently start
    where the first ended (build a fresh pair instead).
    ``progress``: True, a progress bar; ``"log"``, one line per epoch on stderr; False, nothing.

    The run trains in a param-store scope of its own (``pyro.get_param_store().scope()``), so it
    neither sees nor clears the parameters already in Pyro's store; afterwards the modules hold the
    trained parameters, and the store holds them too, beside the others (a parameter of the same
    name is replaced). Raises :class:`Interrupted` on SIGINT/SIGTERM (after checkpointing)
    and :class:`Diverged` when non-finite steps persist.
    """
    if isinstance(config, dict):
        config = Config.from_dict(config, "fit()'s config")
    settings = (config.training if config is not None else TrainingConfig())
    settings = Config.from_dict({**dataclasses.asdict(settings), **training}, "fit()'s keyword arguments").training
    if isinstance(model, Pair):  # fit(Pair(model, guide, ...), data, objective, ...)
        data, objective = guide, objective if data is None else data
        model, guide = model.programs()
    elif is_data(guide) or guide is None and is_data(data):  # fit(make_pair, data, ...): a fresh pair
        make = model
        data, objective = (as_dataset(guide), objective if data is None else data) if is_data(guide) else \
            (as_dataset(data), objective)
        pyro.set_rng_seed(settings.seed)
        model, guide = spec.build(make, data, f"fit's make_pair ({getattr(make, '__name__', make)!r})")
        if config is None:  # recorded, so that every command works on the run
            config = Config().replace(**spec.recorded(make, data, settings.seed))
    elif data is None:
        raise UsageError("fit takes (model, guide, data) or (make_pair, data); pass the data.")
    if not isinstance(objective, objectives.Objective):
        k = particles if particles is not None else (config.inference.particles if config else default("particles"))
        objective = objectives.make(objective, particles=k)
    step = VEMStep(settings.e_steps) if settings.schedule == "vem" else JointStep()
    modules = [m for m in map(owning_module, (model, guide)) if m is not None]
    trained = next((m for m in modules if getattr(m, TRAINED, False)), None)
    if trained is not None and not (warm_start or resume):
        raise UsageError(f"this {type(trained).__name__} was already trained by an earlier fit, so this run would "
                         f"start from its trained weights, not from fresh ones; build a new model and guide for "
                         f"each run, or pass warm_start=True to continue from them.")
    if jit is None:
        jit = config.inference.jit if config is not None else default("jit")
    with pyro.get_param_store().scope() as own:  # the run's own parameters: it clears nobody else's
        trainer = Trainer(model, guide, data, objective, settings, device=device, out=out, config=config,
                          progress=progress, step=step, jit=jit)
        try:
            if resume:
                trainer.restore()
            elif out is not None:
                trainer.start_run_dir()
            history = History(trainer.run())
        finally:
            trainer.release()  # also when the run directory is refused before training
    merge_into_store(own)
    for module in modules:
        setattr(module, TRAINED, True)
    history.model, history.guide = model, guide
    return history


TRAINED = "_trained_by_ppl_vae_fit"  # set on the modules a fit has trained


class History(list):
    """What ``fit`` returns: the metrics of every epoch (a list of dicts), and the trained ``model`` and
    ``guide`` — those passed in, or those ``make_pair`` built."""

    model: object = None
    guide: object = None


def is_data(value) -> bool:
    return isinstance(value, (Dataset, torch.Tensor, Mapping))


def as_dataset(data) -> Dataset:
    return data if isinstance(data, Dataset) else Dataset.from_tensors(data)


def merge_into_store(state: dict) -> None:
    """Add a run's parameters (a param-store state) to Pyro's store, replacing those of the same names."""
    store = pyro.get_param_store()
    for name in state["params"]:
        if name in store:
            del store[name]
    store.set_state(state)


@dataclass
class EpochProgress:
    """How far the current epoch has got: steps, Σ loss over them, data points, seconds."""

    steps: int = 0
    loss: float = 0.0
    count: int = 0
    seconds: float = 0.0
    extra: float = 0.0  # Σ of a Pair's extra losses


class JointStep:
    """Joint SVI: one guarded step on θ and φ together per mini-batch."""

    def build(self, trainer) -> None:
        """(Re)build the SVI on the trainer's optimizer; called again after every rollback."""
        loss = trainer.objective.loss
        if trainer.pair is not None and trainer.pair.losses:
            loss = trainer.extra_losses = WithLosses(loss, trainer.pair)
        self.svi = GuardedSVI(trainer.model, trainer.guide, trainer.optim, loss=loss,
                              eager=trainer.eager_loss, sync=trainer.step_sync)

    def __call__(self, x, idx, **inputs) -> float:
        return self.svi.step(x, idx, **inputs)


class Trainer:
    """One SVI run: its set-up, the epoch loop, the metrics and the checkpoints."""

    def __init__(self, model, guide, data, objective: objectives.Objective, training: TrainingConfig, *,
                 device="auto", out: str | None = None, config: Config | None = None, progress: bool = True,
                 step=None, jit: bool = False):
        Config(training=training).validate()
        self.world = parallel.world()  # under torchrun, this process's rank; else the single process
        self.device = resolve_device(device)
        self.modules = {role: owning_module(m) for role, m in (("model", model), ("guide", guide))}
        for module in self.modules.values():
            if module is not None:
                module.to(self.device)
        self.model, self.guide = callables(model, guide)
        self.pair = pair_of(model)  # a Pair's extras: per-batch arguments, extra losses, step inputs, a hook
        self.extra_losses: WithLosses | None = None
        if self.pair is not None and self.pair.losses and not isinstance(step or JointStep(), JointStep):
            raise UsageError("a Pair's extra losses train with --schedule joint (variational EM steps the model "
                             "and the guide apart); drop them or train jointly.")
        if self.pair is not None and self.pair.losses and self.world.parallel:
            raise UsageError("a Pair's extra losses train in one process (each rank would report its own share); "
                             "run without torchrun, or drop the extra losses.")
        data = as_dataset(data)
        unused = unused_input(model, guide, data.inputs_train)
        if unused is not None:
            raise UsageError(f"the data's named input {unused!r} is a parameter of neither the model nor the guide, "
                             f"so neither would see it; name it as their parameter is named, or leave it out.")
        self.data = data.to(self.device)
        self.inputs = {split: named_inputs(model, guide, self.data, split) for split in ("train", "test")}
        self.given = given_rows(self.inputs["train"])  # semi-supervised: the points that have every input
        self.objective, self.training = objective, training
        self.step_rule = step or JointStep()
        self.eager_loss = None  # the objective's eager loss, once a recorded one trains (diagnoses faults)
        self.epochs = training.epochs
        self.schedule = dict(lr=training.lr, milestones=tuple(training.lr_milestones), gamma=training.lr_gamma)
        self.out, self.progress = out, progress
        self.files = RunDirectory(out, self.world) if out is not None else None
        used = {"objective": objective.name, "particles": objective.particles, **dataclasses.asdict(training)}
        # a pair passed in from Python is not one the registry can rebuild: record only what is known
        self.config = config.replace(**used).to_dict() if config is not None else \
            {"config_version": CONFIG_VERSION, **used}
        self.epoch, self.step = 0, 0  # epochs and steps completed
        self.in_epoch = EpochProgress()
        self.lr_scale = 1.0  # × nan_lr_factor after each numerical fault
        self.faults = 0  # rollbacks since the last checkpoint
        self.good: dict | None = None  # the last checkpoint, kept in memory for rollbacks
        self.stop_request = StopRequest()
        self.agreed_stop: int | None = None  # data-parallel: the stop signal the ranks agreed on at the last step
        self.weight = 1.0  # data-parallel: this rank's weight w_r in the sums (ppl_vae.parallel)
        self.history: list[dict] = []

        # torch's threads: the cores other processes leave free, from the first torch-heavy work on (the data
        # checks and the recording's check run full passes), and glibc set to reuse torch's large buffers
        self.governor = Governor.start()
        keep_freed_memory()
        try:
            pyro.clear_param_store()  # in fit, the run's own (empty) scope; a Trainer made directly takes the store
            pyro.set_rng_seed(training.seed)
            self.lr = lr_at(0, **self.schedule)
            self._new_optimizer()
            if not takes_lr(self.optim.kind) and self.progress and self.world.main:
                tqdm.write(f"{training.optimizer} has no learning rate, so --lr and its schedule do not apply: its "
                           f"step size is its own (--optim-args {json.dumps(training.optim_args)})", file=sys.stderr)
            self._create_params()
            self.world.broadcast_params()  # every rank starts from rank 0's weights
            first_epoch = self.data.train_epoch(0)  # binarized once for the data checks and the recording's check
            valid_data(self.model, self.guide, self.data, self.inputs["train"],
                       None if self.own_test_bound else self.inputs["test"], first_epoch)
            self.to_record = first_epoch if jit else None  # recorded when training starts (record_step)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Give torch back the thread count it had before this trainer (the governor's)."""
        if self.governor is not None:
            self.governor.stop()
            self.governor = None

    def sync(self, params, loss):
        """Data-parallel: sum the ranks' gradients and losses (one all-reduce) and agree on a stop request;
        None in a single process, where GuardedSVI checks its own."""
        losses = loss if isinstance(loss, tuple) else (loss,)
        summed, self.agreed_stop = self.world.sum_step(params, losses, self.weight, self.stop_request.signum)
        return summed if isinstance(loss, tuple) else summed[0]

    @property
    def step_sync(self):
        """What GuardedSVI sums a step's gradients with: :meth:`sync` in a data-parallel run, else None."""
        return self.sync if self.world.parallel else None

    def stop_signal(self) -> int | None:
        """The SIGINT/SIGTERM to stop on now: this process's, or in a data-parallel run the one the ranks agreed on
        at the last step (so that every rank stops after the same step)."""
        return self.agreed_stop if self.world.parallel else self.stop_request.signum

    def _new_optimizer(self) -> None:
        self.optim = Optimizer(self.lr, self.lr_factor, self.training.adam_eps, self.training.optimizer,
                               self.training.optim_args)
        self.step_rule.build(self)

    # -- checkpoints (the run directory's files: ppl_vae.io.rundir.RunDirectory) --------

    def start_run_dir(self) -> None:
        self.files.start(self.config)

    def restore(self) -> None:
        """Continue from the run's checkpoint: parameters, optimizer, RNG, position in the epoch."""
        if self.files is None:
            raise UsageError("resuming needs the run directory (--resume RUN_DIR).")
        self.good = self.files.checkpoint(self.device)
        self.load_state(self.good)
        self.history = self.files.metrics(self.epoch)
        if self.world.rank > 0:  # its own stream: saved by a run on as many ranks, else a fresh one
            saved = self.good.get("ranks_rng", [])
            if self.world.rank <= len(saved):
                checkpoint.set_rng_state(saved[self.world.rank - 1])
            else:
                pyro.set_rng_seed(parallel.rank_seed(self.training.seed + self.step, self.world.rank))
            self.good = self.state()
        self.files.continue_from(self.history)

    def state(self) -> dict:
        """Everything a checkpoint holds, copied, so that later steps cannot change it."""
        params = {name: p.detach().clone() for name, p in pyro.get_param_store().named_parameters()}
        modules = {role: {k: v.detach().clone() for k, v in m.state_dict().items()}
                   for role, m in self.modules.items() if m is not None}
        return {"epoch": self.epoch, "step": self.step, "in_epoch": asdict(self.in_epoch),
                "lr_scale": self.lr_scale, "params": params, "modules": modules,
                "optim": copy.deepcopy(self.optim.state_dict()), "rng": checkpoint.rng_state(), "config": self.config}

    def load_state(self, state: dict) -> None:
        """Put parameters, optimizer, RNG and position back to ``state``, a checkpoint."""
        for role, module in self.modules.items():
            if module is not None and role in state["modules"]:
                try:
                    module.load_state_dict(state["modules"][role])
                except RuntimeError:  # other layer names or shapes
                    raise UsageError(f"the {role} in the checkpoint in {self.out} has other layers than this "
                                     f"one; resume with the configuration that wrote it.") from None
        if set(pyro.get_param_store().keys()) != set(state["params"]):
            self._create_params()
        store = dict(pyro.get_param_store().named_parameters())
        if not set(store) <= set(state["params"]):
            raise UsageError(f"the checkpoint in {self.out} holds parameters {sorted(state['params'])[:3]}... "
                             f"that do not match this model and guide; resume with the same configuration.")
        with torch.no_grad():
            for name, value in state["params"].items():
                if name in store:
                    store[name].copy_(value)
                    store[name].grad = None
                else:  # state the objective keeps in the param store, e.g. a score-function baseline
                    pyro.get_param_store()[name] = value
        self._new_optimizer()
        self.optim.load_state_dict(copy.deepcopy(state["optim"]))  # a copy: Adam updates its state in place
        checkpoint.set_rng_state(state["rng"])
        self.epoch, self.step = state["epoch"], state["step"]
        self.in_epoch = EpochProgress(**state.get("in_epoch", {}))
        self.lr_scale = state.get("lr_scale", 1.0)

    def _create_params(self) -> None:
        """Run guide and model once so every Pyro parameter exists with its constraint, and check on
        that batch that the objective can train them (:mod:`ppl_vae.inference.checks`)."""
        found = prepared(self.objective, self.model, self.guide, self.data, self.inputs["train"],
                         None if self.own_test_bound else self.inputs["test"],
                         full_batch=self.training.batch_size >= self.data.x_train.shape[0],
                         step_inputs=self.step_inputs(0))
        model_tr, self.global_sites = found.model_trace, found.global_sites
        self.scaled = describe_scale(found.own_scales) if found.own_scales else None
        if found.one_at_a_time and self.progress and self.world.main:
            tqdm.write(found.one_at_a_time, file=sys.stderr)
        if self.scaled and self.progress and self.world.main:
            tqdm.write(f"the program scales its own log-densities ({self.scaled}, poutine.scale): the training bound "
                       f"is of the scaled program, not a bound on log p(x); the test bound and evaluate are of the "
                       f"unscaled program", file=sys.stderr)
        if self.given is not None and self.progress and self.world.main:
            names = ", ".join(k for k, v in self.inputs["train"].items() if isinstance(v, Partial))
            tqdm.write(f"{names} given for {int(self.given.sum())} of {self.given.numel()} training points: labelled and "
                       f"unlabelled points train in batches apart (the program gets {names}=None for the unlabelled), "
                       f"so the training bound mixes bounds on log p(x, {names}) and on log p(x)", file=sys.stderr)
        if self.pair is not None and self.pair.step_inputs and self.progress and self.world.main:
            tqdm.write(f"the program gets {', '.join(self.pair.step_inputs)} at every training step from the pair's "
                       f"schedule: the training bound is of the program called so; the test bound and evaluate call "
                       f"it with its own defaults", file=sys.stderr)
        if found.objective is not self.objective:  # elbo on a model with enumerated sites: they are summed out
            self.objective = found.objective
            self.step_rule.build(self)
        # a model written with pyro.plate("data", N, subsample=idx): its losses are scaled by N / batch
        self.full_size = data_size(model_tr)
        if self.world.parallel:
            why = sharding_refusal(self.objective, self.modules["guide"], model_tr, self.training,
                                   self.data.x_train.shape[0], self.world.size)
            if why is not None:
                raise UsageError(f"this run cannot train on {self.world.size} processes: {why}.")

    @property
    def own_test_bound(self) -> bool:
        """Whether the guide computes its own test bound (a non-amortized guide refits q per test point)."""
        return getattr(self.modules["guide"], "test_bound", None) is not None

    def record_step(self) -> None:
        """Train with the objective's recorded step where it equals the eager one (:mod:`ppl_vae.inference.record`),
        once, when asked to (``jit``); :meth:`run` calls it first, after every refusal a run can meet."""
        if self.to_record is None:
            return
        x, self.to_record = self.to_record, None
        n, b = self.data.x_train.shape[0], self.training.batch_size
        sizes = {min(n, b)} | ({n % b} if not self.training.drop_last and n > b and n % b else set())
        batch = [self.world.shard(torch.arange(start, start + min(n, b), device=x.device))  # this rank's share
                 for start in (0, b if n >= 2 * b else 0)]
        step_inputs = self.step_inputs(0)
        partial = [k for k, v in self.inputs["train"].items() if isinstance(v, Partial)]
        inputs = {} if partial else self.inputs["train"]  # (a partial input is not recorded: recorded() says why)
        first, second = (((x[idx], idx), {**batch_inputs(inputs, idx), **step_inputs}) for idx in batch)
        if self.epoch >= self.epochs:
            return  # nothing left to train
        # the whole run's steps, not those left: a resumed run takes the path the first took, so it stays bit-identical
        steps = self.epochs * epoch_steps(n, b, self.training.drop_last, self.given)
        self.eager_loss = self.objective.loss
        self.objective, said = recorded(self.objective, self.model, self.guide, first, second,
                                        schedule=self.training.schedule, sizes=sizes, steps=steps,
                                        not_tensors=[k for k, v in step_inputs.items() if not torch.is_tensor(v)],
                                        partial=partial)
        if said is not None and self.progress and self.world.main:
            done = self.objective.loss is not self.eager_loss
            tqdm.write(f"{self.objective.name}: training step {said}." if done else
                       f"{self.objective.name} trains eagerly, not recorded: {said}.", file=sys.stderr)
        self.step_rule.build(self)

    def save(self) -> None:
        """Checkpoint now: in memory for rollbacks, and atomically to the run directory if any."""
        self.good = self.state()
        self.faults = 0
        if self.files is not None:
            self.files.save(self.good, self.world.gather_objects(self.good["rng"]) if self.world.parallel else None)

    # -- training ------------------------------------------------------------------------

    def set_lr(self, lr: float) -> None:
        self.lr = lr
        self.optim.set_lr(lr)

    def lr_factor(self, name: str) -> float:
        """The objective's learning-rate factor for a parameter, times the guide's if it has one.

        ``name`` as ``pyro.optim`` writes it: ``module.param``."""
        guide_factor = getattr(self.modules["guide"], "lr_factor", None)
        return self.objective.lr_factor(name) * (guide_factor(name) if guide_factor else 1.0)

    def train_step(self, x: torch.Tensor, idx: torch.Tensor) -> float:
        """One SVI step on the mini-batch x = data[idx] (and its named inputs); returns the loss, −Σ bound.

        Raises :class:`NonFinite` (parameters unchanged) when the loss or a gradient is not finite.
        """
        at_step = getattr(self.objective.loss, "at_step", None)  # a schedule of the objective's own (a temperature)
        if at_step is not None:
            at_step(self.step)
        loss = self.step_rule(x, idx, **batch_inputs(self.inputs["train"], idx), **self.step_inputs())
        if self.pair is not None and self.pair.after_step is not None:
            self.pair.after_step()
        return loss

    def step_inputs(self, step: int | None = None) -> dict:
        """The pair's per-step arguments at ``step`` (default: this one, counted from 0), e.g. a KL annealing factor."""
        step = self.step if step is None else step
        return {name: schedule(step) for name, schedule in self.pair.step_inputs.items()} if self.pair else {}

    def train_epoch(self) -> float:
        """The epoch's remaining steps; returns the mean training bound per data point."""
        self.set_lr(lr_at(self.epoch, **self.schedule) * self.lr_scale)
        n = self.data.x_train.shape[0]
        x = self.data.train_epoch(self.epoch)
        order = epoch_generator(self.training.seed, self.epoch, self.device, "permute")
        chunks = batches(n, self.training.batch_size, order, device=self.device, drop_last=self.training.drop_last,
                         given=self.given)
        done = self.in_epoch
        for idx in chunks[done.steps:]:
            start = time.perf_counter()
            mine = self.world.shard(idx)  # idx itself in a single process
            self.weight = mine.numel() / idx.numel() if self.full_size else 1.0
            loss = self.train_step(x[mine], mine)  # in a data-parallel run, the whole batch's
            if not math.isfinite(loss):  # a train_step that does not use GuardedSVI
                raise NonFinite("the loss was not finite")
            done.loss += loss * idx.numel() / self.full_size if self.full_size else loss  # per point, not × N/B
            done.count += idx.numel()
            if self.extra_losses is not None:
                done.extra += self.extra_losses.take_total()
            done.steps += 1
            done.seconds += time.perf_counter() - start
            self.step += 1
            self.bar.step()
            if self.governor is not None:
                self.governor.tick()
            if self.stop_signal() is not None:
                self.stop()
            if self.training.checkpoint_every and self.step % self.training.checkpoint_every == 0 and done.steps < len(chunks):
                self.save()
        return -done.loss / done.count

    def recover(self, fault: NonFinite) -> None:
        """Roll back to the last checkpoint with a smaller learning rate, or give up."""
        where = f"epoch {self.epoch + 1}, step {self.step + 1} ({self.objective.name})"
        if self.faults >= self.training.nan_retries:
            kept = (f"the checkpoint in {self.out} (epoch {self.good['epoch']}, step {self.good['step']}) is intact"
                    if self.out is not None else "no run directory was given")
            raise Diverged(f"training stopped at {where}: {fault} even after {self.faults} rollback(s) with the "
                           f"learning rate down to {self.lr:.3g}; {kept}, so train again with a smaller --lr.")
        faults, scale = self.faults + 1, self.lr_scale * self.training.nan_lr_factor
        self.load_state(self.good)
        self.faults, self.lr_scale = faults, scale
        self.bar.rewind(self.step)
        if self.world.main:
            tqdm.write(f"{where}: {fault}; back to step {self.step} with the learning rate × "
                       f"{self.training.nan_lr_factor:g}", file=sys.stderr)

    def stop(self, saved: bool = False) -> None:
        """Act on SIGINT/SIGTERM between steps: checkpoint, then raise :class:`Interrupted`."""
        if self.out is not None and not saved:
            self.save()
        raise interrupted(self.stop_signal(), self.out,
                          f"after step {self.step} ({count(self.epoch, 'epoch')} and "
                          f"{count(self.in_epoch.steps, 'step')} done)")

    def test_bound(self) -> float | None:
        if self.data.x_test is None:
            return None
        per_point_guide = getattr(self.modules["guide"], "test_bound", None)
        rows = self.world.rows(self.data.x_test.shape[0])  # data-parallel: each rank's share, gathered
        try:
            with invalid_values_as_faults(), eval_mode(self.model, self.guide):
                if per_point_guide is not None:  # a non-amortized guide has no q for test points: it fits them
                    values = per_point_guide(self.objective, self.model, self.data.x_test)
                else:
                    values = self.objective.test_bound(self.model, self.guide, self.data.x_test[rows],
                                                       given_globals=bool(self.global_sites),
                                                       **batch_inputs(self.inputs["test"], rows))
        except NonFinite:
            if not self.world.parallel:
                raise
            values = torch.full((rows.stop - rows.start,), math.nan, device=self.device)  # the others still gather
        value = self.world.gather_rows(values).mean().item()
        if not math.isfinite(value):
            raise NonFinite("the test bound was not finite")
        return value

    def end_epoch(self, train_bound: float, test_bound: float | None) -> dict:
        """Record the finished epoch's metrics and checkpoint it."""
        self.epoch += 1
        metrics = {"epoch": self.epoch, "step": self.step, "train_bound": train_bound,
                   "test_bound": test_bound, "seconds": self.in_epoch.seconds, "lr": self.lr}
        if self.global_sites:  # the test bound is the ELBO given β ~ q(β), not a bound on log p(x)
            metrics["test_bound_given"] = self.global_sites
        if self.scaled:  # the train bound is the scaled program's loss
            metrics["train_bound_scaled"] = self.scaled
        if self.given is not None:  # the mean of labelled points' bounds and unlabelled points' bounds
            metrics["train_bound_labelled"] = f"{int(self.given.sum())} of {self.given.numel()}"
        if self.pair is not None and self.pair.step_inputs:  # the train bound is of the program called with these
            metrics["train_bound_given"] = {k: v.item() if torch.is_tensor(v) and v.numel() == 1 else
                                            v if isinstance(v, (bool, int, float, str)) else repr(v)
                                            for k, v in self.step_inputs(self.step - 1).items()}
        if self.extra_losses is not None:  # beside the bound, not in it
            metrics["train_extra_loss"] = self.in_epoch.extra / max(1, self.in_epoch.count)
        self.in_epoch = EpochProgress()
        self.history.append(metrics)
        for output in self.outputs:
            output.epoch_end(metrics)
        self.save()
        return metrics

    def run(self) -> list[dict]:
        """Train up to ``epochs``, from wherever the trainer stands; returns every epoch's metrics."""
        per_epoch = epoch_steps(self.data.x_train.shape[0], self.training.batch_size, self.training.drop_last,
                                self.given)
        main = self.world.main  # the files and the bar are rank 0's
        self.record_step()
        self.bar = Progress(self.progress if main else False, self.epochs * per_epoch, self.step, self.epochs,
                            self.objective.name)
        self.outputs = [self.bar, *run_files(self.out if main else None)]
        if self.governor is None:  # a second run of one trainer
            self.governor = Governor.start()
        try:
            with stop_requests() as self.stop_request, pyro.validation_enabled(self.training.validate):
                if self.good is None:
                    if self.world.rank > 0:  # particles from the rank's own stream; rank 0 keeps the run's
                        pyro.set_rng_seed(parallel.rank_seed(self.training.seed, self.world.rank))
                    self.save()  # the state a numerical fault or a kill falls back to
                while self.epoch < self.epochs:
                    try:
                        train_bound, test_bound = self.train_epoch(), self.test_bound()
                    except NonFinite as fault:
                        self.recover(fault)
                        continue
                    self.end_epoch(train_bound, test_bound)
                    self.agreed_stop = self.world.agree_stop(self.stop_request.signum)
                    if self.stop_signal() is not None:
                        self.stop(saved=True)
        finally:
            for output in self.outputs:
                output.close()
            self.release()
        return self.history
