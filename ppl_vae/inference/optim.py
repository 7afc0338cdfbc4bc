"""One torch optimizer over every parameter a run trains, instead of ``pyro.optim``'s one per tensor.

``pyro.optim.PyroOptim`` builds a separate ``torch.optim.Adam`` for every parameter tensor and
steps them one by one, a fixed cost per tensor per step. :class:`Optimizer` keeps one torch
optimizer (``foreach`` where it has it: all tensors of a group updated by a few fused kernels) for
the dense parameters — module parameters and ``pyro.param`` sites alike, as unconstrained tensors.
It is ``torch.optim.Adam`` unless the run names another (``--optimizer``, ``--optim-args``): any
``torch.optim`` class, or Pyro's own ``ClippedAdam`` and ``AdagradRMSProp`` (the optimizers of
Pyro's examples), with its constructor's arguments. One ``torch.optim.SparseAdam`` serves a
parameter marked ``sparse_grad`` (the local guide's
per-data-point table, ``guides/local.py``), which moves only the rows a step's gradient holds.
A parameter's learning rate is the run's times its factor (a learned baseline's, the local
guide's); parameters of one factor share a param group.

Parameters join when a step first touches them (an objective may create some at its first
loss, e.g. a learned baseline), and a step moves only the parameters its loss touched: the
others get ``grad = None``, which Adam skips, so variational EM's E- and M-steps share one
optimizer. A checkpoint records each group's factor and parameter names, so a resumed run
rebuilds the same groups before loading Adam's moments.
"""

from __future__ import annotations

import inspect
from typing import Callable

import pyro
import torch
from pyro.optim.adagrad_rmsprop import AdagradRMSProp
from pyro.optim.clipped_adam import ClippedAdam
from pyro.params.param_store import normalize_param_name

from ppl_vae.errors import UsageError

FORMAT = 2  # 1: pyro.optim's {name: one torch optimizer's state}; 2: this module's
PYRO_OPTIMIZERS = {"ClippedAdam": ClippedAdam, "AdagradRMSProp": AdagradRMSProp}  # torch optimizers Pyro defines
UNFIT = ("SparseAdam", "LBFGS")  # sparse gradients only (the local guide's table has its own); needs a closure


def optimizer_class(name: str, args: dict | None = None) -> type:
    """The torch optimizer class named ``name`` (``torch.optim``'s, or Pyro's :data:`PYRO_OPTIMIZERS`), once
    its constructor is known to take ``args``; else one sentence saying what to pass."""
    found = PYRO_OPTIMIZERS.get(name) or getattr(torch.optim, name, None)
    if name in UNFIT or not (isinstance(found, type) and issubclass(found, torch.optim.Optimizer)):
        known = sorted(n for n, c in vars(torch.optim).items() if isinstance(c, type)
                       and issubclass(c, torch.optim.Optimizer) and c is not torch.optim.Optimizer and n not in UNFIT)
        what = "needs what one step cannot give it (sparse gradients; a closure)" if name in UNFIT else \
            "is not a torch.optim optimizer nor one of Pyro's"
        raise UsageError(f"--optimizer {name!r} {what}; choose one of {', '.join(sorted(PYRO_OPTIMIZERS) + known)}.")
    args = dict(args or {})
    if "lr" in args:
        raise UsageError("--optim-args sets lr, which is the run's --lr (with its schedule); pass --lr instead.")
    try:
        inspect.signature(found).bind([], **args)
    except TypeError as e:
        raise UsageError(f"--optim-args {args} do not fit {name}'s constructor ({e}); pass only its keyword "
                         f"arguments, e.g. --optim-args '{{\"weight_decay\": 0.0}}'.") from None
    return found


def takes_lr(kind: type) -> bool:
    """Whether the optimizer has a learning rate that --lr sets (AdagradRMSProp's step size is ``eta``)."""
    return "lr" in inspect.signature(kind).parameters


class Optimizer:
    """Adam and SparseAdam over the run's parameters; called as ``optimizer(params)`` like a PyroOptim."""

    def __init__(self, lr: float, factor: Callable[[str], float], eps: float = 1e-8, name: str = "Adam",
                 args: dict | None = None):
        self.lr, self.factor, self.eps = lr, factor, eps  # factor(name), name as "module.param" (normalized)
        self.kind = optimizer_class(name, args)
        taken = inspect.signature(self.kind).parameters
        self.options = {**({"eps": eps} if "eps" in taken else {}), **({"foreach": True} if "foreach" in taken else {}),
                        **(args or {})}
        self.dense: torch.optim.Adam | None = None
        self.sparse: torch.optim.SparseAdam | None = None
        self.known: dict[int, str] = {}  # id(tensor) -> its name in the param store
        self.lr_set = False  # the groups' rates are lr × factor (or the optimizer's own decay of it)

    def __call__(self, params) -> None:
        """Step the parameters in ``params`` (those a loss touched), adding the ones not seen before; any
        other parameter's gradient (the frozen side of a variational-EM step) is dropped, not applied."""
        store = pyro.get_param_store()
        params = list(params)
        new = [(store.param_name(p), p) for p in params if id(p) not in self.known]
        for name, p in sorted(new, key=lambda item: item[0]):
            self.add(name, p)
        stepped = {id(p) for p in params}
        frozen = len(stepped) < len(self.known)  # only a variational-EM half-step leaves parameters out
        for optimizer in (self.dense, self.sparse):
            if optimizer is None:
                continue
            for group in optimizer.param_groups if frozen else ():
                for p in group["params"]:
                    if id(p) not in stepped:
                        p.grad = None
            optimizer.step()

    def add(self, name: str, param: torch.Tensor) -> None:
        factor = self.factor(normalize_param_name(name))
        sparse = getattr(param, "sparse_grad", False)
        optimizer = self.sparse if sparse else self.dense
        if optimizer is None:
            kind = torch.optim.SparseAdam if sparse else self.kind
            options = {"eps": self.eps} if sparse else self.options
            rate = {"lr": self.lr * factor} if takes_lr(kind) else {}
            optimizer = kind([{"params": [param], "lr": self.lr * factor, "factor": factor, "names": [name]}],
                             **rate, **options)
            setattr(self, "sparse" if sparse else "dense", optimizer)
        else:
            kind = type(optimizer)
            if kind is not torch.optim.SparseAdam and kind is not torch.optim.Adam:
                # some set a parameter's state up in __init__ (Pyro's AdagradRMSProp), not at its first step
                fresh = kind([param], **({"lr": self.lr * factor} if takes_lr(kind) else {}), **self.options)
                if param in fresh.state:
                    optimizer.state[param] = fresh.state[param]
            group = next((g for g in optimizer.param_groups if g["factor"] == factor), None)
            if group is None:
                optimizer.add_param_group({"params": [param], "lr": self.lr * factor, "factor": factor,
                                           "names": [name]})
            else:
                group["params"].append(param)
                group["names"].append(name)
        self.known[id(param)] = name

    def set_lr(self, lr: float) -> None:
        """Set every group's rate to ``lr`` × its factor — only when ``lr`` changes, so an optimizer that
        decays its own rate at every step (ClippedAdam's ``lrd``) keeps its decay within a constant ``lr``."""
        if lr == self.lr and self.lr_set:
            return
        self.lr, self.lr_set = lr, True
        for optimizer in (self.dense, self.sparse):
            for group in optimizer.param_groups if optimizer is not None else ():
                group["lr"] = lr * group["factor"]

    def rates(self) -> dict[str, float]:
        """{parameter name: its learning rate now}."""
        return {name: group["lr"] for optimizer in (self.dense, self.sparse) if optimizer is not None
                for group in optimizer.param_groups for name in group["names"]}

    def state_dict(self) -> dict:
        """The groups (factor and parameter names) and torch's states, for a checkpoint."""
        return {"format": FORMAT, "lr": self.lr, **{kind: None if opt is None else opt.state_dict()
                                     for kind, opt in (("dense", self.dense), ("sparse", self.sparse))}}

    def load_state_dict(self, state: dict) -> None:
        """Rebuild the groups from the param store by name, then load the states (a copy: Adam updates
        its state in place). A checkpoint of ``pyro.optim`` (format 1) is converted: each tensor's
        own Adam moments become this optimizer's."""
        store = dict(pyro.get_param_store().named_parameters())
        if state.get("format") != FORMAT:
            return self._load_pyro_optim(state, store)
        for kind in ("dense", "sparse"):
            saved = state.get(kind)
            if saved is None:
                continue
            for group in saved["param_groups"]:
                for name in group["names"]:
                    if name not in store:
                        raise UsageError(f"the checkpoint's optimizer holds {name!r}, which this model and guide "
                                         f"do not have; resume with the configuration that wrote it.")
                    self.add(name, store[name])
            getattr(self, kind).load_state_dict(saved)
        if "lr" in state:  # the groups' rates as saved, with any decay of the optimizer's own since
            self.lr, self.lr_set = state["lr"], True
        else:
            self.lr_set = False
            self.set_lr(self.lr)  # the run's schedule, not the rate saved with the state

    def _load_pyro_optim(self, state: dict, store: dict) -> None:
        for name in sorted(state):
            if name in store:
                self.add(name, store[name])
        for optimizer in (self.dense, self.sparse):
            for group in optimizer.param_groups if optimizer is not None else ():
                for name, param in zip(group["names"], group["params"]):
                    moments = state[name].get("state", {}).get(0)
                    if moments:
                        optimizer.state[param] = {k: v.clone() if torch.is_tensor(v) else v
                                                  for k, v in moments.items()}
