"""Estimators of log p(x) per data point, one module each, every one checked against PPCA's exact value.

=============  =========================================================  ======================
name           estimate of log p(x)                                       what it is
=============  =========================================================  ======================
``elbo``       E_q[log p_θ(x, z) − log q_φ(z | x)]                          lower bound
``is``         log (1/K) Σ_k p_θ(x, z_k) / q_φ(z_k | x), z_k ~ q            stochastic lower bound
``laplace``    log p_θ(x, z*) + (d/2) log 2π − ½ log det H at the mode z*   approximation
``perturbative`` V₀ + log E_q[Σ_{k≤K} (log w − V₀)^k / k!], K odd           stochastic lower bound
``ais``        log (1/C) Σ_c w_c, annealed from q to p(z | x) by HMC         stochastic lower bound
=============  =========================================================  ======================

(each in the module of its name, all in :data:`ESTIMATORS`) and
:func:`~ppl_vae.evaluation.estimators.ais.bdmc`, the bracket [lower, upper] of AIS forward and
backward on data simulated from the model. Each function takes (model, guide, x) as
:func:`ppl_vae.evaluate` does and returns a dict: ``estimate`` (the mean over the points, nats per
data point), ``se`` (its standard error over the points), ``mc_se`` where the estimator gives it (the
estimate's Monte Carlo standard error: elbo and is, by :func:`~ppl_vae.evaluation.evaluate.draws`), ``seconds`` (wall time), ``quantity``
(what the number is), ``n``, ``per_point`` (the tensor [N]) and the estimator's own fields. None
takes a model's closed-form ``log_marginal`` instead; each refuses, with one sentence and before any
work, a pair it cannot handle (:func:`~ppl_vae.evaluation.estimators.target.latent_space`).
"""

from __future__ import annotations

# The modules are named after their estimators; the functions are reached through ESTIMATORS or their
# module (``from ppl_vae.evaluation.estimators.laplace import laplace``), never re-bound here, so that
# ``ppl_vae.evaluation.estimators.laplace`` stays the module.
from ppl_vae.evaluation.estimators import ais as _ais
from ppl_vae.evaluation.estimators import elbo as _elbo
from ppl_vae.evaluation.estimators import importance as _importance
from ppl_vae.evaluation.estimators import laplace as _laplace
from ppl_vae.evaluation.estimators import perturbative as _perturbative
from ppl_vae.evaluation.estimators.target import latent_space
from ppl_vae.evaluation.evaluate import mc

ESTIMATORS = {"elbo": _elbo.elbo, "is": _importance.importance, "laplace": _laplace.laplace,
              "perturbative": _perturbative.perturbative, "ais": _ais.ais}
NEEDS = {"elbo": _elbo.NEEDS, "is": _importance.NEEDS, "laplace": _laplace.NEEDS,
         "perturbative": _perturbative.NEEDS, "ais": _ais.NEEDS, "bdmc": _ais.NEEDS}


def check(names, model, guide, x, inputs: dict | None = None) -> None:
    """Refuse (UsageError, one sentence) the first of ``names`` (ESTIMATORS' keys or "bdmc") that cannot
    run on this pair, before any of them does work."""
    for name in names:
        latent_space(model, guide, x, inputs, estimator=name, needs=NEEDS[name])


def describe(entry: dict) -> str:
    """One line saying what an estimator's number is, for the CLI and scripts."""
    name, est, se, secs = entry["estimator"], entry["estimate"], entry["se"], entry["seconds"]
    value = f"{est:.2f} ± {se:.2f}{mc(entry, '')} nats per example"
    if name == "elbo":
        what = f"a lower bound, the ELBO from K = {entry['particles']} draws of q"
    elif name == "is":
        what = f"a stochastic lower bound, importance sampling with K = {entry['particles']} draws of q"
    elif name == "laplace":
        what = (f"an approximation, neither bound, at the mode of log p(x, z) "
                f"({entry['not_positive_definite']} of {entry['points']} points left out, H not positive definite; "
                f"{entry['not_stationary']} where it stopped rising before its gradient vanished, as at a ReLU kink; "
                f"{entry['not_converged']} not converged)")
    elif name == "perturbative":
        what = (f"a stochastic lower bound, perturbative of order K = {entry['order']} from "
                f"{entry['particles']} draws of q")
    elif name == "ais":
        what = (f"a stochastic lower bound, AIS with T = {entry['steps']}, {entry['chains']} chains, "
                f"HMC acceptance {entry['acceptance']:.2f}")
    else:
        return (f"{'bdmc':<13} log p(x) in [{entry['lower']:.2f} ± {entry['lower_se']:.2f}, {entry['upper']:.2f} ± "
                f"{entry['upper_se']:.2f}] nats per example on {entry['n']} points simulated from the model: forward "
                f"AIS a stochastic lower bound, reverse AIS from the simulated z a stochastic upper bound, gap "
                f"{entry['gap']:.3f} ± {entry['gap_se']:.3f} (T = {entry['steps']}, {entry['chains']} chains), "
                f"{secs:.1f} s")
    return f"{name:<13} {value}: {what}, {secs:.1f} s"


def summary(entry: dict) -> dict:
    """An entry as eval.json holds it: every field but the per-point tensors."""
    return {k: v for k, v in entry.items() if not k.startswith("per_point")}


__all__ = ["ESTIMATORS", "NEEDS", "check", "describe", "summary"]
