"""Test-set evaluation: the ELBO and the importance-sampled log-likelihood.

With K particles z_k ~ q_φ(z | x) per test point (Burda et al. 2016, appendix),

    log p(x) ≈ log p̂_K(x) = log (1/K) Σ_k p_θ(x, z_k) / q_φ(z_k | x),

a stochastic lower bound whose expectation increases to log p(x) as K grows. The same draws
give the ELBO as the mean of log w. Particles are drawn in chunks under ``torch.no_grad()``
and combined with a running log-sum-exp, so K = 5000 fits in memory on any device.

Results are nats per data point: bounds as log-likelihoods (higher is better) and
NLL = −log p̂_K(x), each with the standard error of its mean over the test points. Every
result says what its numbers are (``estimate``), since not every pair has the same answer:

- ``"importance-sampled"``: the above, with K particles;
- ``"exact"``: the model has a closed-form ``log_marginal`` (PPCA, the Gaussian mixture),
  and NLL = −log p(x) with no sampling (for continuous data log p(x) is a log-density and
  can be positive, so the NLL can be negative);
- ``"not a bound"``: the guide is a point mass q = δ(z − f(x)), whose entropy is −∞; the
  number is log p(x | f(x)) + log p(f(x)), reconstruction plus log prior, and no NLL exists;
- ``"given global latents"``: the model has latents β outside the data plate, shared by all
  points, so there is no per-point log p(x_n); the number is the per-point ELBO with β ~ q(β),
  E_q[log p(x_n, z_n | β) − log q(z_n | x_n)] ≤ E_q(β)[log p(x_n | β)], and no NLL exists.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import pyro
import torch
from pyro import poutine
from pyro.distributions import Delta
from pyro.poutine.util import site_is_subsample
from torch.distributions import Independent

from ppl_vae import parallel
from ppl_vae.data import batch_inputs, split
from ppl_vae.device import forked_rng
from ppl_vae.evaluation.quantity import log_prob_of_inputs, observed_quantity
from ppl_vae.pair import as_pyro_callable, callables, eval_mode, owning_module
from ppl_vae.inference.chunks import chunk_sizes, max_elements_for
from ppl_vae.inference.validation import valid_points
from ppl_vae.inference.weights import (data_plate, in_plate, log_weights, one_at_a_time, plate_nesting,
                                       vectorizable)

class Draws(NamedTuple):
    """Per data point [N]: the ELBO and log p̂_K from the same K draws of q, and the Monte Carlo variance
    of each as an estimate for that point (:func:`draws`)."""

    elbo: torch.Tensor
    log_px: torch.Tensor
    elbo_var: torch.Tensor
    log_px_var: torch.Tensor


@torch.no_grad()
def draws(model, guide, x, particles: int = 5000, *, max_plate_nesting: int = 1, max_elements: int | None = None,
          inputs: dict | None = None, given_globals: bool = False, vectorized: bool = True) -> Draws:
    """(ELBO, log p̂_K) per data point from K importance samples, with their Monte Carlo variances:
    the ELBO's is Var_k(log w_k) / K; log p̂_K's, by the delta method (Owen 2013, §9.2),

        Var[log p̂_K] ≈ Var(w) / (K w̄²) = (K Σ_k w_k² / (Σ_k w_k)² − 1) / (K − 1),

    which is 0 when the weights are equal and 1 when one weight holds all the mass. A first-order
    approximation: with heavy-tailed weights (ESS = (Σw)²/Σw² of a few) it understates the error. NaN
    at K = 1. ``inputs`` are the points' named inputs, passed to the model and guide by keyword;
    ``vectorized``: particles drawn at once in a plate, or one pass each (a program that does not broadcast)."""
    batch, k_chunk = chunk_sizes(x.shape[0], x[0].numel(), particles, max_elements or max_elements_for(x.device))
    parts = []
    dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()  # word counts: the weights' dtype
    for xb, ib in split(x, inputs, batch):
        lse, lse2 = (xb.new_full((xb.shape[0],), -math.inf, dtype=dtype) for _ in range(2))
        total, squares = (xb.new_zeros(xb.shape[0], dtype=torch.float64) for _ in range(2))
        for start in range(0, particles, k_chunk):
            k = min(k_chunk, particles - start)
            lw = log_weights(model, guide, xb, particles=k, max_plate_nesting=max_plate_nesting,
                             given_globals=given_globals, vectorized=vectorized, **ib)
            lse = torch.logaddexp(lse, torch.logsumexp(lw, 0))
            lse2 = torch.logaddexp(lse2, torch.logsumexp(2 * lw, 0))
            total += lw.double().sum(0)
            squares += lw.double().square().sum(0)
        mean, dof = total / particles, max(particles - 1, 0) or math.nan
        elbo_var = ((squares - particles * mean * mean) / dof).clamp(min=0) / particles
        log_px_var = ((particles * (lse2 - 2 * lse).double().exp() - 1) / dof).clamp(min=0)
        parts.append((mean.to(dtype), lse - math.log(particles), elbo_var.to(dtype), log_px_var.to(dtype)))
    return Draws(*(torch.cat(column) for column in zip(*parts)))


def per_point(model, guide, x, particles: int = 5000, **options) -> tuple[torch.Tensor, torch.Tensor]:
    """(ELBO, log p̂_K) per data point, each a tensor [N], from K importance samples (:func:`draws`)."""
    found = draws(model, guide, x, particles, **options)
    return found.elbo, found.log_px


def mc_se(variances: torch.Tensor) -> float:
    """The Monte Carlo standard error of a mean over N points of estimates with these variances, each
    point's particles drawn independently: √(Σ_n Var_n) / N."""
    return variances.sum().sqrt().item() / max(variances.numel(), 1)


def mean_and_se(values: torch.Tensor) -> tuple[float, float]:
    """Mean over data points and its standard error, std / sqrt(N)."""
    n = values.numel()
    se = values.std(unbiased=True).item() / math.sqrt(n) if n > 1 else float("nan")
    return values.mean().item(), se


def latent_sites(model, guide, x, inputs: dict | None = None) -> tuple[list[str], list[str], int]:
    """(the guide's latent sites whose distribution is a point mass (``Delta``), the latent sites of guide
    or model outside the data plate: global latents, the plates the program nests), from a look at one
    data point (or at all of them, for a program whose parameters are sized by the data set, as
    sparse_gamma_def.py's guide) that leaves the random stream as it was."""
    def traces(rows):
        some = batch_inputs(inputs, rows)
        with torch.no_grad(), forked_rng(x):
            guide_tr = poutine.trace(guide).get_trace(x[rows], **some)
            return poutine.trace(poutine.replay(model, trace=guide_tr)).get_trace(x[rows], **some), guide_tr

    try:
        model_tr, guide_tr = traces(slice(0, 1))
    except (ValueError, RuntimeError, IndexError):  # a shape error on one point: look at them all
        model_tr, guide_tr = traces(slice(None))
    point_masses, globals_ = [], []
    plate = data_plate(model_tr)
    for trace in (guide_tr, model_tr):
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or site["is_observed"] or site_is_subsample(site):
                continue
            fn = site.get("fn")
            while isinstance(fn, Independent):
                fn = fn.base_dist
            if trace is guide_tr and isinstance(fn, Delta):
                point_masses.append(name)
            if not in_plate(site, plate) and name not in globals_:
                globals_.append(name)
    return point_masses, globals_, plate_nesting(guide_tr, model_tr)


def evaluate(model, guide, x, particles: int = 5000, *, max_plate_nesting: int = 1,
             max_elements: int | None = None, inputs: dict | None = None) -> dict:
    """Test ELBO and NLL in nats per data point, with standard errors, labelled by ``estimate``
    (see the module docstring): importance-sampled with K = ``particles``, exact, or not a bound.

    ``model`` and ``guide`` are Pyro callables (or modules with ``.model`` / ``.guide``);
    ``x`` is the test tensor [N, D] on their device, ``inputs`` its named inputs
    ({name: tensor [N, ...]}, e.g. ``data.inputs_test``). The result names what its bounds and NLL are
    of (``"quantity"``, e.g. log p(x, y) when the model observes an input y, log p(x | y) when it only
    conditions on it; ``"observed"``, ``"given"``: :mod:`ppl_vae.evaluation.quantity`). ``max_elements`` bounds particles ×
    points × dimensions per chunk, i.e. the memory one chunk takes (default: sized to the device,
    :func:`max_elements_for`). Under torchrun (:mod:`ppl_vae.parallel`) every process estimates its
    share of the points from its own random stream and every process returns the whole result. The
    pair's modules run in eval mode (BatchNorm's running statistics, no dropout) and get their own
    modes back afterwards (:func:`ppl_vae.pair.eval_mode`), so a pair as ``fit`` returns it evaluates as
    a loaded run does.
    """
    with eval_mode(model, guide):
        result = _evaluate(model, guide, x, particles, max_plate_nesting=max_plate_nesting, max_elements=max_elements,
                           inputs=inputs)
    lengths = (inputs or {}).get("lengths")
    if torch.is_tensor(lengths):  # sequences: the same numbers per time step, over the steps within each length
        result["mean_length"] = lengths.double().mean().item()
    return result


def _evaluate(model, guide, x, particles: int, *, max_plate_nesting: int, max_elements: int | None,
              inputs: dict | None) -> dict:
    module = owning_module(model)
    model_fn = as_pyro_callable(model, "model")
    model, guide = callables(model, guide)
    n = int(x.shape[0])
    if hasattr(module, "log_marginal"):
        with torch.no_grad():
            ll_mean, ll_se = mean_and_se(module.log_marginal(x, **(inputs or {})))  # the LGSSM's takes lengths
        return {"estimate": "exact", "test_log_px": ll_mean, "test_nll": -ll_mean, "test_nll_se": ll_se, "n": n}
    valid_points(model, guide, x, inputs or {}, "test")  # once, so that the K particles run without the checks
    point_masses, globals_, nesting = latent_sites(model, guide, x, inputs)
    max_plate_nesting = max(max_plate_nesting, nesting)
    why = vectorizable(model, guide, x[:2], max_plate_nesting=max_plate_nesting, **batch_inputs(inputs, slice(0, 2)))
    world = parallel.world()  # under torchrun each rank takes its share of the points, and all get every result
    rows = world.rows(n)
    with pyro.validation_enabled(False):
        found = draws(model, guide, x[rows], particles, max_plate_nesting=max_plate_nesting, max_elements=max_elements,
                      inputs=batch_inputs(inputs, rows), given_globals=bool(globals_), vectorized=why is None)
    elbo, ll, elbo_var, ll_var = (world.gather_rows(t) for t in found)
    elbo_mean, elbo_se = mean_and_se(elbo)
    if globals_:
        given = ", ".join(globals_)
        return {"estimate": "given global latents", "bound": False, "global_sites": globals_,
                "quantity": f"ELBO given q({given})",
                "reason": f"{given} is a global latent, shared by every data point, so no per-point log p(x) "
                          f"exists to estimate; the number is the per-point ELBO with {given} drawn from its "
                          f"trained q, a bound on E_q[log p(x | {given})]",
                "test_objective": elbo_mean, "test_objective_se": elbo_se, "test_objective_mc_se": mc_se(elbo_var),
                "particles": particles, "n": n}
    if point_masses:
        return {"estimate": "not a bound", "bound": False,
                "quantity": "log p(x | z) + log p(z) at the point-mass guide's z",
                "reason": f"the guide's site {point_masses[0]!r} is a point mass, whose entropy is −∞: "
                          f"the number is log p(x | z) + log p(z) at the guide's z, and log p(x) is not estimated",
                "test_objective": elbo_mean, "test_objective_se": elbo_se, "test_objective_mc_se": mc_se(elbo_var),
                "n": n}
    ll_mean, ll_se = mean_and_se(ll)
    label = observed_quantity(model, guide, x, inputs, model_fn)
    with forked_rng(x):
        log_py = log_prob_of_inputs(model, guide, x, inputs or {}, label["observed"])
    if log_py is not None:  # p(y) known exactly: log p(x | y) = log p(x, y) − log p(y), the same MC error
        conditional, conditional_se = mean_and_se(ll - log_py)
        inputs_scored = [s for s, what in label["observed"].items() if what.startswith("the input ")]
        label.update(conditional_quantity=f"log p(x | {', '.join(inputs_scored)})", test_nll_conditional=-conditional,
                     test_nll_conditional_se=conditional_se)
    return {"estimate": "importance-sampled", "test_elbo": elbo_mean, "test_elbo_se": elbo_se,
            "test_elbo_mc_se": mc_se(elbo_var), "test_nll": -ll_mean, "test_nll_se": ll_se, "test_nll_mc_se": mc_se(ll_var),
            "particles": particles, "n": n, **({"one_at_a_time": one_at_a_time(why)} if why else {}), **label}


def quantity_of(result: dict) -> str:
    """The log-likelihood an importance-sampled result estimates; eval.json files older than the
    ``quantity`` key named only the inputs given."""
    given = result.get("given")
    return result.get("quantity") or (f"log p(x | {', '.join(given)})" if given else "log p(x)")


def describe(result: dict) -> str:
    """One line saying what ``evaluate``'s numbers are, for the CLI and scripts; for sequences (a ``lengths``
    input) the same numbers per time step follow, divided by the mean length L̄ (Σ_n bound_n / Σ_n L_n)."""
    line = _describe(result)
    if "mean_length" not in result:
        return line
    per = ({"log p(x)": result["test_log_px"]} if result["estimate"] == "exact" else
           {"ELBO": result.get("test_elbo"), "NLL": result.get("test_nll"), result.get("quantity"): result.get("test_objective")})
    steps = ", ".join(f"{name} {value / result['mean_length']:.3f}" for name, value in per.items() if value is not None)
    return f"{line}; per time step (÷ the mean length {result['mean_length']:.2f}): {steps}"


def _describe(result: dict) -> str:
    if result["estimate"] == "exact":
        return (f"test log p(x) {result['test_log_px']:.2f} ± {result['test_nll_se']:.2f} nats per example, exact "
                f"(the model's closed form; for continuous data a log-density, which can be positive), "
                f"{result['n']} test points")
    spread = f"±: standard error over {result['n']} test points"
    if result["estimate"] == "given global latents":
        return (f"test {result['quantity']} {result['test_objective']:.2f} ± {result['test_objective_se']:.2f}"
                f"{mc(result, 'test_objective')} nats per example (K = {result['particles']}; {spread}; {MC}): "
                f"{result['reason']}")
    if result["estimate"] == "not a bound":
        return (f"test log p(x | z) + log p(z) {result['test_objective']:.2f} ± {result['test_objective_se']:.2f} "
                f"nats per example at the point-mass guide's z ({spread}): not a bound on log p(x), and no NLL is "
                f"estimated")
    return (f"test ELBO {result['test_elbo']:.2f} ± {result['test_elbo_se']:.2f}{mc(result, 'test_elbo')}, "
            f"test NLL = −{quantity_of(result)} {result['test_nll']:.2f} ± {result['test_nll_se']:.2f}"
            f"{mc(result, 'test_nll')}"
            + (f", −{result['conditional_quantity']} {result['test_nll_conditional']:.2f} ± "
               f"{result['test_nll_conditional_se']:.2f} (log p(y) exact)" if "conditional_quantity" in result else "")
            + f" nats per example (importance-sampled, K = {result['particles']}; {spread}; {MC})"
            + (f"; {result['one_at_a_time']}" if "one_at_a_time" in result else ""))


MC = "MC: the estimate's Monte Carlo standard error, by the delta method"


def mc(result: dict, key: str) -> str:
    """" (MC ± e)" for a result that has the Monte Carlo standard error of ``key`` (``key``_mc_se; an
    estimator's entry: mc_se) at K > 1, else ""."""
    value = result.get(f"{key}_mc_se" if key else "mc_se")
    return f" (MC ± {value:.3f})" if value is not None and math.isfinite(value) else ""
