"""What several test files share (no test file imports another, or conftest)."""

from ppl_vae import registry
from ppl_vae.config import Config


def config(**settings) -> Config:
    """A resolved run configuration: the defaults of ppl_vae.config, ``settings``, the model's own defaults."""
    return registry.resolve(Config.from_dict(settings))


def trainer(model, guide, data, objective="elbo", *, particles=1, step=None, **training):
    """A Trainer on the CPU with no run directory, ``training`` settings over TrainingConfig's defaults."""
    from ppl_vae.config import TrainingConfig
    from ppl_vae.inference import objectives
    from ppl_vae.inference.trainer import Trainer

    return Trainer(model, guide, data, objectives.make(objective, particles=particles), TrainingConfig(**training),
                   device="cpu", progress=False, step=step)
