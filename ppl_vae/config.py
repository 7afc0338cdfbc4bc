"""The typed run configuration: every setting of a run, its one default, and its checks.

A run is described by five sections, each a dataclass:

- :class:`DataConfig`      which data set and how its pixels become observations;
- :class:`PairConfig`      the model p_θ(x, z) and the guide q_φ(z | x): names, network sizes,
                           and how the model is fit (SVI, closed form, EM);
- :class:`InferenceConfig` the objective and its options (particles K, Rényi's α, baselines);
- :class:`TrainingConfig`  the optimization: epochs, batches, learning rate and its schedule,
                           seed, checkpoints, the NaN guard;
- :class:`RunConfig`       where it runs (device).

Every key is unique across the sections, so ``config.json``, a ``--config run.toml`` file and
the command-line flags all use the same flat names (``lr``, ``latent_dim``, ...); a TOML file
may also group them under ``[data]``, ``[pair]``, ``[inference]``, ``[training]``, ``[run]``.
:meth:`Config.from_dict` reads every ``config.json`` written so far (a key missing from an
older one takes its default here) and refuses an unknown key with one sentence naming the
nearest valid one. A few settings default to ``None``, meaning "the model's own": the guide,
objective and binarization of ``gmm`` and ``ppca`` differ from the VAE's; the registry fills
them in (:func:`ppl_vae.registry.resolve`) before a run starts, and ``config.json`` records
the resolved values.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
from dataclasses import dataclass, field, fields

from ppl_vae.errors import UsageError

CONFIG_VERSION = 2  # 1: the untyped dicts before this module; 2: adds config_version

# Network shapes of papers, applied before the explicit settings: `iwae` is the one-stochastic-layer
# 784-200-200-50 tanh network of Burda et al. 2016, `iwae2` their two-stochastic-layer one
# (x → 200-200 → z1(100) → 100-100 → z2(50)).
PRESETS = {
    "iwae": {"latent_dim": 50, "hidden": [200, 200], "activation": "tanh"},
    "iwae2": {"model": "two-layer", "guide": "two-layer", "latent_dim": 50, "hidden": [200, 200],
              "activation": "tanh", "z1_dim": 100, "hidden2": [100, 100]},
    # the sigmoid belief networks of the VIMCO / DisARM papers (200 binary latents; linear, or two
    # deterministic tanh layers of 200 each way; or two stochastic layers of 200, linear) and the categorical
    # VAE of Jang et al. 2017 (20 × 10)
    "sbn": {"model": "sbn", "latent_dim": 200, "hidden": [], "activation": "tanh"},
    "sbn-nonlinear": {"model": "sbn", "latent_dim": 200, "hidden": [200, 200], "activation": "tanh"},
    "sbn2": {"model": "sbn2", "latent_dim": 200, "hidden": [], "activation": "tanh"},
    "cat-vae": {"model": "cat-vae", "latent_dim": 20, "categories": 10, "hidden": [256, 512], "activation": "relu"},
}


@dataclass
class DataConfig:
    dataset: str = "digits"  # "file" with data_file
    data_file: str | None = None  # a .pt / .npz / .safetensors file of named tensors (ppl_vae.data.load_file)
    data_sha256: str | None = None  # that file when the run was trained
    data_dir: str = "data"
    download: bool = False
    binarize: str | None = None  # None: the model's (dynamic for the VAEs, none for ppca, gmm and --data files)
    dequantize: bool = False
    pad: int | None = None


@dataclass
class PairConfig:
    pair: str | None = None  # a user's pair factory, FILE.py:FACTORY or MODULE:FACTORY (ppl_vae.spec)
    pair_sha256: str | None = None  # the pair's file when the run was trained
    model: str | None = "vae"  # None with a pair: the factory builds model and guide
    guide: str | None = None  # None: the model's (gaussian; linear for ppca, empty for gmm)
    preset: str | None = None
    latent_dim: int = 8
    hidden: list[int] = field(default_factory=lambda: [200])
    activation: str = "relu"
    likelihood: str | None = None  # None: bernoulli for binary pixels, gaussian for grey levels
    flow_depth: int = 2
    z1_dim: int | None = None  # two-layer model: None is 2 × latent_dim, the paper's ratio
    hidden2: list[int] | None = None  # two-layer model: None is [2 × latent_dim] * 2
    method: str = "svi"
    components: int = 10
    categories: int = 10  # categorical VAE: categories per latent (--latent-dim of them)
    steps: int | None = None  # DRAW's glimpses, one latent z_t each; AIR's most objects (None: the model's default)
    attention: bool = True  # DRAW: read and write through Gaussian filterbanks; False: the whole image
    z_pres_prior: float = 0.01  # AIR: ρ, the prior's probability of one more object
    z_pres_baseline: str = "neural"  # AIR: z_pres's score-function baseline (neural, average, none)
    covariance: str = "full"


@dataclass
class InferenceConfig:
    objective: str | None = None  # None: the model's (elbo; enum for gmm)
    particles: int = 1
    jit: bool = True  # record the step where the run allows it (ppl_vae.inference.record), else eager with a line saying why
    alpha: float = 0.5
    baseline_beta: float = 0.9
    baseline_lr_factor: float = 10.0
    mmd_scale: float = 1000.0
    temperature: float = 1.0  # τ_0 of concrete and concrete-st
    anneal_rate: float = 0.0  # τ_t = max(min_temperature, τ_0 exp(−rate t)); 0: τ_0 throughout
    min_temperature: float = 0.5
    test_bound: str | None = None  # "iwae": the test IWAE-K bound every epoch (ppl-vae compare)


@dataclass
class TrainingConfig:
    epochs: int = 100
    batch_size: int = 100
    lr: float = 1e-3
    lr_milestones: list[int] = field(default_factory=list)
    lr_gamma: float = 0.1
    adam_eps: float = 1e-8  # torch's; Burda et al. 2016 train with 1e-4
    optimizer: str = "Adam"  # any torch.optim class, or Pyro's ClippedAdam / AdagradRMSProp
    optim_args: dict = field(default_factory=dict)  # its constructor's keyword arguments, but lr (--lr)
    drop_last: bool = True
    tol: float = 1e-4  # EM stops when the training log-likelihood per point rises by less (nats)
    schedule: str = "joint"
    e_steps: int = 1
    seed: int = 0
    checkpoint_every: int | None = None
    nan_retries: int = 1
    nan_lr_factor: float = 0.5
    validate: bool = False  # Pyro's distribution checks at every step, not only in the pass over the data


@dataclass
class RunConfig:
    device: str = "auto"


SECTIONS = {"data": DataConfig, "pair": PairConfig, "inference": InferenceConfig, "training": TrainingConfig,
            "run": RunConfig}
SECTION_OF = {f.name: name for name, cls in SECTIONS.items() for f in fields(cls)}
SCHEDULES = ("joint", "vem")
METHODS = ("closed-form", "em", "svi")


def default(key: str):
    """The one default of a setting, e.g. ``default("lr") == 1e-3``."""
    (f,) = [f for f in fields(SECTIONS[SECTION_OF[key]]) if f.name == key]
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def unknown_key(key: str, where: str) -> UsageError:
    near = difflib.get_close_matches(key, list(SECTION_OF), n=1)
    hint = f"did you mean {near[0]!r}?" if near else "see `ppl-vae config RUN_DIR` for every setting."
    return UsageError(f"unknown setting {key!r} in {where}; {hint}")


def flatten(values: dict, where: str) -> dict:
    """Flat {key: value} from flat keys and/or section tables; refuses unknown keys and sections."""
    flat = {}
    for key, value in values.items():
        if key in SECTIONS and isinstance(value, dict):
            for inner, v in value.items():
                if SECTION_OF.get(inner) != key:
                    raise unknown_key(inner, f"{where}, section [{key}]") if inner not in SECTION_OF else \
                        UsageError(f"setting {inner!r} belongs in section [{SECTION_OF[inner]}], not [{key}], "
                                   f"in {where}; move it there or write it without a section.")
                flat[inner] = v
        elif key == "config_version":
            continue
        elif key not in SECTION_OF:
            raise unknown_key(key, where)
        else:
            flat[key] = value
    return flat


@dataclass
class Config:
    """A whole run's settings; ``config.json`` is :meth:`to_dict` plus ``config_version``."""

    data: DataConfig = field(default_factory=DataConfig)
    pair: PairConfig = field(default_factory=PairConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    run: RunConfig = field(default_factory=RunConfig)

    @classmethod
    def from_dict(cls, values: dict, where: str = "the configuration") -> "Config":
        """A config from flat keys or section tables; a ``preset`` fills the keys not given."""
        flat = flatten(values, where)
        preset = flat.get("preset")
        if preset is not None:
            if preset not in PRESETS:
                raise UsageError(f"unknown preset {preset!r} in {where}; choose one of {', '.join(PRESETS)}.")
            flat = {**PRESETS[preset], **flat}
        for key, value in flat.items():
            check_type(key, value, where)
        sections = {name: {k: v for k, v in flat.items() if SECTION_OF[k] == name} for name in SECTIONS}
        return cls(**{name: SECTIONS[name](**sections[name]) for name in SECTIONS})

    @classmethod
    def from_toml(cls, path: str) -> dict:
        """The flat settings of a TOML file (checked for unknown keys), to merge before from_dict."""
        try:
            with open(path, "rb") as f:
                values = tomllib.load(f)
        except OSError as e:
            raise UsageError(f"cannot read the config file {path} ({e.strerror or e}); pass a TOML file.") from None
        except tomllib.TOMLDecodeError as e:
            raise UsageError(f"{path} is not valid TOML ({e}); fix it or write it anew from `ppl-vae config RUN_DIR`.") \
                from None
        flat = flatten(values, path)
        for key, value in flat.items():
            check_type(key, value, path)
        return flat

    def to_dict(self) -> dict:
        """Every setting under its flat key, as config.json holds them."""
        return {"config_version": CONFIG_VERSION,
                **{k: v for section in SECTIONS for k, v in dataclasses.asdict(getattr(self, section)).items()}}

    def replace(self, **changes) -> "Config":
        """A copy with some flat keys changed."""
        return Config.from_dict({**self.to_dict(), **changes})

    def to_toml(self) -> str:
        """The settings as TOML, one table per section; None (the model's default) is left out."""
        lines = [f"# ppl-vae run configuration, version {CONFIG_VERSION}: `ppl-vae train --config FILE`"]
        for name in SECTIONS:
            lines += ["", f"[{name}]"]
            for key, value in dataclasses.asdict(getattr(self, name)).items():
                if value is not None:
                    lines.append(f"{key} = {toml_value(value)}")
        return "\n".join(lines) + "\n"

    def validate(self) -> "Config":
        """Range checks of the numbers and the fixed choices; combinations are the registry's."""
        d, p, i, t = self.data, self.pair, self.inference, self.training
        checks = [
            (p.latent_dim >= 1 and all(h >= 1 for h in p.hidden), "--latent-dim and every --hidden width must be at least 1"),
            (p.flow_depth >= 1, "--flow-depth must be at least 1"),
            (p.components >= 1, f"--components must be at least 1, got {p.components}"),
            (p.steps is None or p.steps >= 1, f"--steps must be at least 1, got {p.steps}"),
            (0 < p.z_pres_prior < 1, f"--z-pres-prior is a probability in (0, 1), got {p.z_pres_prior}"),
            (p.method in METHODS, f"unknown method {p.method!r}; choose one of {', '.join(METHODS)}"),
            (i.particles >= 1, f"--particles must be at least 1, got {i.particles}"),
            (t.epochs >= 0, f"--epochs must be at least 0, got {t.epochs}"),
            (t.batch_size >= 1, f"--batch-size must be at least 1, got {t.batch_size}"),
            (0 < t.lr < math.inf and 0 < t.lr_gamma < math.inf, "the learning rate and --lr-gamma must be finite and > 0"),
            (0 < t.adam_eps < math.inf, "--adam-eps must be finite and > 0"),
            (t.schedule in SCHEDULES, f"unknown schedule {t.schedule!r}; choose one of {', '.join(SCHEDULES)}"),
            (t.e_steps >= 1, "--e-steps must be at least 1"),
            (t.checkpoint_every is None or t.checkpoint_every >= 1, "--checkpoint-every must be at least 1"),
            (t.nan_retries >= 0 and 0 < t.nan_lr_factor <= 1, "--nan-retries must be ≥ 0 and --nan-lr-factor in (0, 1]"),
            (0 <= t.seed < 2**32, f"--seed must be an integer from 0 to {2**32 - 1}"),
            (d.pad is None or d.pad >= 1, "--pad must be at least 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message + ".")
        from ppl_vae.inference.optim import optimizer_class  # torch and Pyro, only once the numbers are sound
        optimizer_class(t.optimizer, t.optim_args)
        return self


TYPES = {"int": int, "float": (int, float), "bool": bool, "str": str, "dict": dict}


def check_type(key: str, value, where: str) -> None:
    """Refuse a value of the wrong type (``epochs = "ten"`` in a TOML file) with one sentence."""
    (f,) = [f for f in fields(SECTIONS[SECTION_OF[key]]) if f.name == key]
    kinds = [k.strip() for k in f.type.split("|")]  # e.g. "int | None", "list[int]"
    if value is None and "None" in kinds:
        return
    for kind in kinds:
        if kind.startswith("list["):
            inner = TYPES[kind[5:-1]]
            if isinstance(value, list) and all(isinstance(v, inner) and not isinstance(v, bool) for v in value):
                return
        elif kind in TYPES and isinstance(value, TYPES[kind]) and (kind == "bool" or not isinstance(value, bool)):
            return
    raise UsageError(f"setting {key!r} in {where} must be {' or '.join(kinds)}, got {value!r}; "
                     f"see `ppl-vae config RUN_DIR` for an example of every setting.")


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    return repr(value)
