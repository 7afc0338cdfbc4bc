"""The library's entry point: a configuration becomes a trained run, a run directory a loaded one.

:func:`train` is what ``ppl-vae train`` (and ``compare`` and ``baselines``, run by run) does:
build the data, the model, the guide and the objective that a
:class:`~ppl_vae.config.Config` names, and train them into a run directory — by SVI
(:func:`ppl_vae.inference.trainer.fit`) or by the model's own closed form or EM
(:func:`ppl_vae.classical.em.fit`). :func:`load` rebuilds a trained run from its directory
for evaluation, figures and reports. Everything is checked before any data is loaded or any
file is written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pyro
import torch

from ppl_vae import registry, spec
from ppl_vae.classical import em
from ppl_vae.config import Config
from ppl_vae import data as datasets
from ppl_vae.data import CUSTOM, Dataset
from ppl_vae.inference.checks import first_traces
from ppl_vae.device import resolve_device
from ppl_vae.errors import UsageError, user_code
from ppl_vae.inference.trainer import fit, merge_into_store
from ppl_vae.io import checkpoint
from ppl_vae.io.rundir import CONFIG, output_dir, read_config, require_run
from ppl_vae.pair import callables, named_inputs, owning_module


def train(config: Config, out: str | None, *, resume: bool = False, progress: bool = True,
          trust_code: bool = False) -> list[dict]:
    """Train the run ``config`` describes into ``out`` (None: nothing written); returns its metrics.
    ``trust_code``: a resumed run may load the pair its config.json names even if this machine has not
    run that file (:func:`ppl_vae.spec.factory`); a new run's pair is the caller's own."""
    config = registry.resolve(config)
    if config.pair.pair is not None and not resume:  # a new run records its file; a resumed one keeps the first's
        spec.trust(config.pair.pair)
        config = config.replace(pair_sha256=spec.digest(config.pair.pair))
    if config.data.data_file is not None and not resume:  # likewise its data file
        if not os.path.isfile(config.data.data_file):
            raise UsageError(f"--data {config.data.data_file}: there is no such file; pass a .pt, .npz or "
                             f".safetensors file of named tensors.")
        config = config.replace(data_file=os.path.abspath(config.data.data_file),
                                data_sha256=datasets.file_digest(config.data.data_file))
    run = registry.assemble(config, trust_code=trust_code, strict=True)
    with output_dir(out):  # only now, and a run refused when it starts leaves no empty folder behind
        if run.objective is None:
            t = config.training
            return em.fit(run.model, run.guide, run.data, config.pair.method, epochs=t.epochs, tol=t.tol, seed=t.seed,
                          out=out, resume=resume, config=config.to_dict(), progress=progress)
        return fit(run.model, run.guide, run.data, run.objective, device=run.data.device, out=out, resume=resume,
                   config=config, progress=progress)


def config_of(run_dir: str) -> Config:
    """The configuration a run directory's config.json records, of any version written so far; refused
    with one sentence for a run no command can rebuild (trained from Python on objects or on tensors)."""
    require_run(run_dir)
    recorded = read_config(run_dir)
    if recorded.get("dataset") == CUSTOM:
        raise UsageError(f"{run_dir} was trained on tensors passed to fit from Python (dataset "
                         f"{recorded['dataset']!r}), which no command can load again; evaluate it from Python "
                         f"with ppl_vae.evaluate.")
    return Config.from_dict(recorded, os.path.join(run_dir, CONFIG))


@dataclass
class Run:
    """A trained run, rebuilt from its directory: configuration, data, model and guide (modules, or
    the callables a user's pair factory returned)."""

    dir: str
    config: Config
    data: Dataset
    model: object
    guide: object
    epoch: int

    def inputs(self, split: str = "test") -> dict:
        """The named inputs the pair takes with the data's ``split`` (:func:`ppl_vae.pair.named_inputs`)."""
        return named_inputs(self.model, self.guide, self.data, split)


def load(run_dir: str, device="auto", trust_code: bool = False) -> Run:
    """Rebuild the run in ``run_dir`` from config.json and load its checkpoint's parameters. A pair from a
    file runs only if this machine has run that very file (path and sha256) with ``--pair`` or ``fit``,
    or with ``trust_code=True`` (:func:`ppl_vae.spec.factory`): a run directory from someone else does
    not run their code unasked."""
    config = config_of(run_dir)
    device = resolve_device(device)
    state = checkpoint.load(os.path.join(run_dir, checkpoint.NAME), map_location=device)
    run = registry.assemble(config, device, trust_code=trust_code, seed=False)  # the checkpoint's weights
    config, data, model, guide = run.config, run.data, run.model, run.guide
    modules = {"model": owning_module(model), "guide": owning_module(guide)}
    own_params_in_store(model, guide, data)
    try:
        for role, module in modules.items():
            if module is not None:
                module.load_state_dict(state["modules"][role])
                module.eval()
        if config.pair.pair is not None:
            restore_params(model, guide, data, state["params"])
        restore_objective_state(state["params"])
    except UsageError:
        raise
    except (KeyError, RuntimeError):
        raise UsageError(f"the checkpoint in {run_dir} does not match its config.json; "
                         f"the run directory was altered, so train it again.") from None
    return Run(run_dir, config, data, model, guide, state["epoch"])


def own_params_in_store(model, guide, data) -> None:
    """Put this pair's parameters into Pyro's store under their names, replacing any an earlier run in this
    process left there (every other parameter stays): ``pyro.module`` hands back the store's tensor of a
    name, so gradients (SNR, gaps) would be taken with respect to the other run's parameters."""
    with pyro.get_param_store().scope() as own, user_code("the run's pair fails on its training data"):
        first_traces(*callables(model, guide), data, named_inputs(model, guide, data))
    merge_into_store(own)


def restore_params(model, guide, data, params: dict) -> None:
    """Put a checkpoint's Pyro parameters (unconstrained values) into the store: those of a user's pair
    that no module holds, ``pyro.param`` sites included, created first with their constraints by
    running the pair once on two training points."""
    with user_code("the run's pair fails on its training data", "; was it trained on other data (fit on tensors "
                   "from Python)? Evaluate it from Python."):
        first_traces(*callables(model, guide), data, named_inputs(model, guide, data))
    store = dict(pyro.get_param_store().named_parameters())
    with torch.no_grad():
        for name, value in params.items():
            if name in store and "$$$" not in name:  # "module$$$param": load_state_dict restored it
                store[name].copy_(value)


def restore_objective_state(params: dict) -> None:
    """Put back into Pyro's store what a checkpoint holds beyond the pair's parameters: the state its objective
    kept there (a learned baseline and its running averages, RELAX's control variate and level), which the
    objective reads back by name, so that a gradient measured on a loaded run (SNR, variance) is the trained
    estimator's. Such state lies on the real line, unconstrained."""
    store = pyro.get_param_store()
    with torch.no_grad():
        for name, value in params.items():
            if name not in store:
                store[name] = value


def report(run, *, device="auto", trust_code: bool = False) -> str:
    """``ppl-vae report RUN`` from Python: draws the run's figures and writes its ``report.md`` and
    ``report.json``; returns the path of ``report.md``. ``run``: a run directory (loaded with :func:`load`,
    so a pair recorded there runs only if trusted or with ``trust_code``) or a loaded :class:`Run`."""
    from ppl_vae.viz.report import write  # matplotlib, only when a report is asked for

    return write(load(os.fspath(run), device=device, trust_code=trust_code) if isinstance(run, (str, os.PathLike))
                 else run)

