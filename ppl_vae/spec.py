"""A user's own pair, named by a spec: ``path/to/my_models.py:make_pair`` or ``mypkg.models:make_pair``.

The spec names a factory ``make_pair(data) -> (model, guide)``, called with the run's
:class:`~ppl_vae.data.Dataset` after the run's seed is set, so every run starts from its own
initial weights. ``ppl-vae train --pair SPEC`` records the spec and the sha256 of the file it
was loaded from in ``config.json``; every later command on the run loads the same file and
refuses, with one sentence, when the file is gone or has changed.

Code runs only with the user's consent. A spec the user types (``--pair``, ``fit(make_pair)``) is
theirs to run, and the file's path and sha256 go into this machine's trust file
(``$PPL_VAE_TRUST_FILE``, default ``~/.config/ppl-vae/trusted.json``). A spec read from a run's
config.json is run only if that exact file (path and sha256) is in the trust file, or with
``--trust-code`` (Python: ``trust_code=True``), which then records it: a run directory received
from someone else cannot run their code by being evaluated, in the spirit of Hugging Face's
``trust_remote_code``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import sys

from ppl_vae.errors import UsageError, user_code
from ppl_vae.pair import Pair

EXAMPLE = "my_models.py:make_pair"


def parse(spec: str) -> tuple[str, str]:
    """(file path or module name, attribute) of ``spec``."""
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr.isidentifier():
        raise UsageError(f"--pair {spec!r} is not FILE.py:FACTORY or MODULE:FACTORY; write it as e.g. "
                         f"--pair {EXAMPLE}.")
    return target, attr


def is_file(target: str) -> bool:
    return target.endswith(".py") or os.sep in target


def source_file(spec: str) -> str:
    """The file the spec's factory is defined in (a module's, found without importing it)."""
    target, _ = parse(spec)
    if is_file(target):
        if not os.path.isfile(target):
            raise UsageError(f"--pair {spec}: there is no file {target}; pass the path of the .py file that "
                             f"defines the factory (a run trained with it needs the file where it was).")
        return os.path.abspath(target)
    try:
        found = importlib.util.find_spec(target)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.origin or not os.path.isfile(found.origin):
        raise UsageError(f"--pair {spec}: no module {target!r} can be imported from here; install it, or pass "
                         f"the file's path (FILE.py:FACTORY).")
    return found.origin


def digest(spec: str) -> str:
    """sha256 of the file that defines the spec's factory."""
    with open(source_file(spec), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def trust_file() -> str:
    return os.environ.get("PPL_VAE_TRUST_FILE") or os.path.join(os.path.expanduser("~"), ".config", "ppl-vae",
                                                                 "trusted.json")


def _trusted() -> dict:
    try:
        with open(trust_file()) as f:
            found = json.load(f)
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def trust(spec: str) -> None:
    """Record the spec's file, as it is now, as code this machine's user runs."""
    path, sha256 = source_file(spec), digest(spec)
    known = _trusted()
    if sha256 in known.get(path, []):
        return
    known.setdefault(path, []).append(sha256)
    temporary = trust_file() + f".{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(trust_file())), exist_ok=True)
        with open(temporary, "w") as f:
            json.dump(known, f, indent=1)
        os.replace(temporary, trust_file())
    except OSError:  # an unwritable home: nothing is remembered, and later commands ask for --trust-code
        pass


def factory(spec: str, sha256: str | None = None, trust_code: bool = False):
    """The callable ``spec`` names. Without ``sha256`` the user typed the spec, and its file is trusted
    from now on; with it (a run's record) the file must be unchanged, and trusted or ``trust_code``."""
    target, attr = parse(spec)
    path = source_file(spec)
    if sha256 is not None and digest(spec) != sha256:
        raise UsageError(f"{path} has changed since this run was trained with --pair {spec} (its sha256 differs), "
                         f"so its model would not be the one trained; restore that version of the file, or train "
                         f"the run again.")
    if sha256 is not None and sha256 not in _trusted().get(path, []) and not trust_code:
        raise UsageError(f"this run's config.json names the pair {spec}, and loading it runs the code in {path}, "
                         f"which has not been run here with --pair; if you trust that file, pass --trust-code "
                         f"(Python: trust_code=True), or train the pair yourself with --pair.")
    trust(spec)
    try:
        if is_file(target):
            name = "ppl_vae_pair_" + hashlib.sha256(path.encode()).hexdigest()[:12]
            loader = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(loader)
            sys.modules[name] = module  # dataclasses and pickling look modules up by name
            sys.path.insert(0, os.path.dirname(path))  # the file may import its neighbours
            try:
                loader.loader.exec_module(module)
            finally:
                sys.path.remove(os.path.dirname(path))
        else:
            module = importlib.import_module(target)
    except Exception as e:  # noqa: BLE001 — a user's file can fail in any way; say how
        raise UsageError(f"--pair {spec}: loading {path} failed ({type(e).__name__}: {e}); fix the file and "
                         f"run again.") from None
    make = getattr(module, attr, None)
    if not callable(make):
        names = [n for n in vars(module) if not n.startswith("_") and callable(getattr(module, n))]
        raise UsageError(f"--pair {spec}: {path} defines no callable {attr!r} (it has {', '.join(names[:8]) or 'none'}); "
                         f"name the function that returns (model, guide).")
    return make


def of(make) -> str | None:
    """The spec that loads the factory ``make`` again (``module:name``, or ``file.py:name`` for a script
    or a file loaded by spec), or None for one no spec can name (a lambda, a closure)."""
    name, module = getattr(make, "__qualname__", ""), sys.modules.get(getattr(make, "__module__", None) or "")
    if not name.isidentifier() or module is None:
        return None
    if module.__name__ == "__main__" or module.__name__.startswith("ppl_vae_pair_"):
        path = getattr(module, "__file__", None)  # "<stdin>" for a script piped into python: no file to name
        return f"{path}:{name}" if path and os.path.isfile(path) else None
    return f"{module.__name__}:{name}"


def recorded(make, data, seed: int) -> dict:
    """The settings a run of the factory ``make`` on ``data`` records in config.json, so that the CLI can
    rebuild it: the factory's spec and sha256, and the data set — unless the data is not what
    ``ppl_vae.data.load(name)`` gives again (tensors from Python, named inputs, another seed's static
    draw), which is recorded as custom and which no command loads; a data file read by
    ``ppl_vae.data.load_file`` is recorded with its path and sha256, as ``--data`` records it."""
    from ppl_vae.data import CUSTOM, DATASETS, FILE

    named = of(make)
    if named:  # the caller runs this factory: its file is theirs to run again
        trust(named)
    pristine = data.name in DATASETS and not data.inputs_train and data.seed == seed
    recorded = {"pair": named, "pair_sha256": named and digest(named), "model": None, "guide": None,
                "dataset": data.name if pristine else CUSTOM, "binarize": data.binarize,
                "dequantize": data.levels is not None}
    if data.source is not None and (data.binarize != "static" or data.seed == seed):  # load_file's: read again
        recorded.update(dataset=FILE, data_file=data.source[0], data_sha256=data.source[1])
    return recorded


def build(make, data, where: str = "the pair factory"):
    """(model, guide) from ``make(data)`` — a tuple, or a :class:`~ppl_vae.pair.Pair` whose model and guide
    come back adapted (:meth:`~ppl_vae.pair.Pair.programs`) — or one sentence saying what it returned instead."""
    with user_code(f"{where} failed on the data", "; it is called as make_pair(data) with a ppl_vae Dataset."):
        pair = make(data)
    return programs(pair, f"{where} returned")


def programs(pair, what: str = "the pair is"):
    """(model, guide) of ``(model, guide)`` or of a :class:`~ppl_vae.pair.Pair`, checked to be programs."""
    both = (pair.model, pair.guide) if isinstance(pair, Pair) else pair
    if not (isinstance(both, tuple) and len(both) == 2 and all(callable(p) or hasattr(p, role)
                                                                  for p, role in zip(both, ("model", "guide")))):
        raise UsageError(f"{what} {type(pair).__name__}, not (model, guide); return the model and the guide "
                         f"(modules with .model / .guide, or Pyro callables) as a pair, or a ppl_vae.Pair.")
    return pair.programs() if isinstance(pair, Pair) else both
