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
from torch import nn

from ppl_vae import registry
from ppl_vae.classical import em
from ppl_vae.config import Config
from ppl_vae.data import Dataset
from ppl_vae.device import resolve_device
from ppl_vae.errors import UsageError
from ppl_vae.inference.trainer import fit
from ppl_vae.io import checkpoint
from ppl_vae.io.rundir import CONFIG, read_config, require_run, writable_dir


def train(config: Config, out: str | None, *, resume: bool = False, progress: bool = True) -> list[dict]:
    """Train the run ``config`` describes into ``out`` (None: nothing written); returns its metrics."""
    config = registry.resolve(config)
    registry.check(config)
    svi = config.pair.method == "svi"
    objective = registry.build_objective(config, strict=True) if svi else None
    device = resolve_device(config.run.device)
    data = registry.load_data(config, device)
    pyro.set_rng_seed(config.training.seed)  # the networks' initial weights
    model, guide = registry.build(config, data)  # the checks that need the data's shapes
    if out is not None:
        writable_dir(out)  # only now: a refused run leaves no empty folder behind
    if not svi:
        t = config.training
        return em.fit(model, guide, data, config.pair.method, epochs=t.epochs, tol=t.tol, seed=t.seed, out=out,
                      resume=resume, config=config.to_dict(), progress=progress)
    return fit(model, guide, data, objective, device=device, out=out, resume=resume, config=config,
               progress=progress)


def config_of(run_dir: str) -> Config:
    """The configuration a run directory's config.json records, of any version written so far."""
    require_run(run_dir)
    return Config.from_dict(read_config(run_dir), os.path.join(run_dir, CONFIG))


@dataclass
class Run:
    """A trained run, rebuilt from its directory: configuration, data, model and guide."""

    dir: str
    config: Config
    data: Dataset
    model: nn.Module
    guide: nn.Module
    epoch: int


def load(run_dir: str, device="auto") -> Run:
    """Rebuild the run in ``run_dir`` from config.json and load its checkpoint's parameters."""
    config = registry.resolve(config_of(run_dir))
    device = resolve_device(device)
    state = checkpoint.load(os.path.join(run_dir, checkpoint.NAME), map_location=device)
    data = registry.load_data(config, device)
    model, guide = registry.build(config, data)
    try:
        model.load_state_dict(state["modules"]["model"])
        guide.load_state_dict(state["modules"]["guide"])
    except (KeyError, RuntimeError):
        raise UsageError(f"the checkpoint in {run_dir} does not match its config.json; "
                         f"the run directory was altered, so train it again.") from None
    return Run(run_dir, config, data, model.eval(), guide.eval(), state["epoch"])
