"""Annealed importance sampling (Neal 2001) from q_φ(z | x) to p_θ(z | x), as Wu, Burda,
Salakhutdinov & Grosse (2017) evaluate decoder-based models, and the bidirectional bounds of BDMC
(Grosse, Ghahramani & Adams 2015).

AIS. For each point x, the unnormalized densities

    γ_t(z) = q_φ(z | x)^{1 − β_t} p_θ(x, z)^{β_t},   0 = β_0 < β_1 < … < β_T = 1,

run from the normalized γ_0 = q_φ(z | x) (Z_0 = 1) to γ_T = p_θ(x, z) (Z_T = p(x)). A chain
starts at z_0 ~ q_φ(z | x) and, for t = 1 … T, multiplies its weight by γ_t(z_{t−1}) / γ_{t−1}(z_{t−1})
and moves by a kernel that leaves γ_t invariant:

    log w = Σ_{t=1}^{T} (β_t − β_{t−1}) [log p_θ(x, z_{t−1}) − log q_φ(z_{t−1} | x)],

with E[w] = p(x). With C independent chains per point, log p̂(x) = log (1/C) Σ_c w_c is a
stochastic lower bound, E[log p̂(x)] ≤ log p(x), tight as T grows (and as C grows). T = 1 is
importance sampling with C particles. The schedule is the sigmoid of Grosse et al. (2015),
β_t ∝ σ(δ (2t/T − 1)) − σ(−δ), δ = 4, rescaled to [0, 1], which spends more steps near both ends.

The kernels are Hamiltonian Monte Carlo (Neal 2011): ``leapfrog`` leapfrog steps with a
Metropolis correction, in coordinates whitened by q's per-coordinate standard deviation s_φ(x)
(mass matrix diag(1/s²), so one step size suits coordinates the posterior pins down and those it
leaves at the prior; 1 for a guide of several sites). Each point has its own step size ε,
multiplied by 1.02 after a transition whose mean acceptance probability exceeds
``target_accept`` and by 0.98 otherwise, and each transition draws a factor in [0.5, 1.5) per
chain (a fixed trajectory length can resonate with a near-Gaussian target and mix badly). The
target is 0.9 rather than the 0.65 that is optimal for mixing in high dimensions: on the digits
VAE at T = 100 it gave log weights of standard deviation 0.12 against 0.16.

Adaptation and validity. A kernel whose ε depends on the chain's own past is not γ_t-invariant in
general: the accept decision at t − 1 depends on z_{t−1}, so ε_t would be a function of the current
state. ε is therefore adapted on ``tune_chains`` extra chains per point, whose weights are
discarded; the chains that enter the estimate move by kernels fixed independently of them (given
the tuning chains, a deterministic sequence), so E[w] = p(x) holds exactly. All chains of all
points in a chunk move at once, as tensors [chains, points, d]; there is no loop over points.

BDMC. On data simulated from the model, (x, z) ~ p_θ(x, z), the simulated z is an exact draw from
p_θ(z | x). Run backwards from it (β from 1 to 0, every chain of the point started at that z, the
kernels those of the forward run in reverse order: its step sizes, which depend on x and not on
z), the same chain gives w_rev with E[w_rev] = 1/p(x), so −log (1/C) Σ_c w_rev,c is a stochastic
upper bound; with the forward lower bound it brackets
log p(x), and the bracket's width bounds the error of either (Grosse et al. 2015).
"""

from __future__ import annotations

import math
import time

import torch
from pyro import poutine
from tqdm.auto import tqdm

from ppl_vae.data import batch_inputs
from ppl_vae.errors import UsageError, user_code
from ppl_vae.evaluation.evaluate import max_elements_for
from ppl_vae.evaluation.estimators.target import Target, latent_space, result, value_and_grad
from ppl_vae.pair import callables

NEEDS = ("real", "density", "density_anywhere")  # latent_space: chains move over R^d, scored by q
MIN_STEP, MAX_STEP = 1e-3, 1.5  # whitened units: q itself is N(0, I) there


def sigmoid_schedule(steps: int, delta: float = 4.0) -> torch.Tensor:
    """β_0 = 0 < … < β_T = 1, the sigmoid schedule of Grosse, Ghahramani & Adams (2015)."""
    t = torch.linspace(-delta, delta, steps + 1, dtype=torch.float64)
    s = torch.sigmoid(t)
    return (s - s[0]) / (s[-1] - s[0])


class _State:
    """Chains [C, n, d] with log p_θ(x, z), log q_φ(z | x) and their gradients, kept for reuse."""

    def __init__(self, target: Target, z: torch.Tensor):
        self.target = target
        self.set(z)

    def set(self, z):
        self.z = z
        self.lp, self.glp = value_and_grad(self.target.log_joint, z)
        self.lq, self.glq = value_and_grad(self.target.log_q, z)

    def log_gamma(self, beta):
        return (1 - beta) * self.lq + beta * self.lp

    def grad(self, beta):
        return (1 - beta) * self.glq + beta * self.glp

    def take(self, other: "_State", accept: torch.Tensor):
        a = accept.unsqueeze(-1)
        self.z = torch.where(a, other.z, self.z)
        self.glp, self.glq = torch.where(a, other.glp, self.glp), torch.where(a, other.glq, self.glq)
        self.lp, self.lq = torch.where(accept, other.lp, self.lp), torch.where(accept, other.lq, self.lq)


def hmc(state: _State, beta: float, eps: torch.Tensor, scale: torch.Tensor, leapfrog: int) -> torch.Tensor:
    """One HMC transition leaving γ_β invariant, in place; returns the acceptance probabilities [C, n].
    ``eps`` [n]: step sizes; ``scale`` [n, d]: the whitening s (z = s ⊙ u)."""
    v = torch.randn_like(state.z)
    # a random factor in [0.5, 1.5) per chain: fixed trajectory lengths can resonate with a Gaussian-like target
    # and mix badly (Neal 2011, §5.4.2.2); it depends on no state, so the kernel stays γ-invariant
    step = eps[:, None] * scale * (0.5 + torch.rand_like(v[..., :1]))  # [C, n, d]
    start = state.log_gamma(beta) - 0.5 * v.pow(2).sum(-1)
    z = state.z
    v = v + 0.5 * step * state.grad(beta)
    for i in range(leapfrog):
        z = z + step * v
        new = _State(state.target, z)
        v = v + (0.5 if i == leapfrog - 1 else 1.0) * step * new.grad(beta)
    log_ratio = torch.nan_to_num(new.log_gamma(beta) - 0.5 * v.pow(2).sum(-1) - start, nan=-math.inf)
    prob = log_ratio.clamp(max=0).exp()
    state.take(new, torch.rand_like(prob) < prob)
    return prob


def anneal(target: Target, z: torch.Tensor, betas: torch.Tensor, *, tune_chains: int, leapfrog: int,
           target_accept: float, step_size: float, schedule: torch.Tensor | None = None, bar=None):
    """Run chains started at z [C + tune, n, d] through ``betas`` (increasing: AIS; decreasing: reverse AIS),
    the step sizes adapted on the last ``tune_chains`` chains, or taken from ``schedule`` [T − 1, n].
    Returns (log w [C, n] of the first C chains, their mean acceptance probability [n], the step sizes
    used [T − 1, n])."""
    state = _State(target, z)
    q = target._one_site_q()
    scale = (q.variance.reshape(target.n, -1).sqrt() if q is not None and _has_variance(q)
             else torch.ones_like(z[0]))
    eps = torch.full((target.n,), step_size, dtype=z.dtype, device=z.device)
    chains = z.shape[0] - tune_chains
    log_w = torch.zeros(z.shape[:2], dtype=z.dtype, device=z.device)
    accepted = torch.zeros(target.n, dtype=z.dtype, device=z.device)
    steps, used = len(betas) - 1, []
    for t in range(1, steps + 1):
        log_w = log_w + (betas[t] - betas[t - 1]).item() * (state.lp - state.lq)
        if t < steps:  # the last transition would not change the weight
            if schedule is not None:
                eps = schedule[t - 1]
            used.append(eps)
            prob = hmc(state, betas[t].item(), eps, scale, leapfrog)
            accepted += prob[:chains].mean(0)
            if tune_chains and schedule is None:
                eps = torch.where(prob[chains:].mean(0) > target_accept, eps * 1.02, eps * 0.98).clamp(MIN_STEP, MAX_STEP)
        if bar is not None:
            bar.update(1)
    acceptance = accepted / (steps - 1) if steps > 1 else torch.full_like(accepted, math.nan)
    return log_w[:chains], acceptance, torch.stack(used) if used else eps.new_zeros(0, target.n)


def _has_variance(q) -> bool:
    try:
        q.variance
    except NotImplementedError:
        return False
    return True


def _chunks(model, guide, space, x, inputs, chains, max_plate_nesting, max_elements):
    budget = max_elements or max_elements_for(x.device)
    batch = max(1, budget // (chains * max(space.dim, x[0].numel())))
    for lo in range(0, x.shape[0], batch):
        rows = slice(lo, lo + batch)
        yield rows, Target(model, guide, space, x[rows], batch_inputs(inputs, rows), max_plate_nesting=max_plate_nesting)


def _run(model, guide, x, z_start, *, forward: bool, steps, chains, tune_chains, leapfrog, target_accept, step_size,
         inputs, max_plate_nesting, max_elements, progress, estimator, schedule=None):
    if min(steps, chains, leapfrog) < 1 or tune_chains < 0:
        raise UsageError(f"{estimator} needs at least one annealing step, one chain and one leapfrog step, got "
                         f"T = {steps}, {chains} chains, {leapfrog} leapfrog steps.")
    space = latent_space(model, guide, x, inputs, estimator=estimator, needs=NEEDS)
    betas = sigmoid_schedule(steps)
    if not forward:
        betas = betas.flip(0)
    total = chains + tune_chains
    estimates, acceptance, eps = [], [], []
    n_chunks = -(-x.shape[0] // max(1, (max_elements or max_elements_for(x.device))
                                     // (total * max(space.dim, x[0].numel()))))
    desc = estimator if estimator == "ais" else f"{estimator} {'forward' if forward else 'reverse'}"
    with tqdm(total=steps * n_chunks, desc=desc, unit="step", disable=not progress, leave=False) as bar:
        for rows, target in _chunks(model, guide, space, x, inputs, total, max_plate_nesting, max_elements):
            if forward:
                z = target.sample_q(total)
            else:
                z = z_start[rows].unsqueeze(0).expand(total, -1, -1).clone()
            log_w, acc, e = anneal(target, z, betas, tune_chains=tune_chains, leapfrog=leapfrog,
                                   target_accept=target_accept, step_size=step_size, bar=bar,
                                   schedule=None if schedule is None else schedule[:, rows])
            estimates.append(torch.logsumexp(log_w, 0) - math.log(chains))
            acceptance.append(acc)
            eps.append(e)
    return torch.cat(estimates), torch.cat(acceptance), torch.cat(eps, 1)


def ais(model, guide, x, *, steps: int = 500, chains: int = 16, tune_chains: int = 4, leapfrog: int = 5,
        target_accept: float = 0.9, step_size: float = 0.5, inputs: dict | None = None, max_plate_nesting: int = 1,
        max_elements: int | None = None, progress: bool = False) -> dict:
    """The AIS estimate log (1/C) Σ_c w_c per point of ``x``, in nats, with T = ``steps`` distributions,
    C = ``chains`` chains per point (plus ``tune_chains`` that only adapt the step size), HMC with
    ``leapfrog`` steps from the initial whitened step size ``step_size``; ``acceptance`` is the mean
    acceptance probability of the chains that count."""
    start = time.perf_counter()
    values, acc, eps = _run(model, guide, x, None, forward=True, steps=steps, chains=chains, tune_chains=tune_chains,
                            leapfrog=leapfrog, target_accept=target_accept, step_size=step_size, inputs=inputs,
                            max_plate_nesting=max_plate_nesting, max_elements=max_elements, progress=progress,
                            estimator="ais")
    return result("ais", "stochastic lower bound", values, time.perf_counter() - start, steps=steps, chains=chains,
                  tune_chains=tune_chains, leapfrog=leapfrog, acceptance=acc.mean().item(),
                  step_size=eps[-1].mean().item() if len(eps) else step_size)


def bdmc(model, guide, x, z, *, steps: int = 500, chains: int = 16, tune_chains: int = 4, leapfrog: int = 5,
         target_accept: float = 0.9, step_size: float = 0.5, inputs: dict | None = None, max_plate_nesting: int = 1,
         max_elements: int | None = None, progress: bool = False) -> dict:
    """Bidirectional Monte Carlo on points ``x`` with exact posterior draws ``z`` [N, d] (data simulated from
    the model, :func:`simulate`): the forward AIS lower bound, the reverse AIS upper bound
    −log (1/C) Σ_c w_rev,c, each per point, and ``gap`` = upper − lower (mean over points, with its error)."""
    start = time.perf_counter()
    options = dict(steps=steps, chains=chains, tune_chains=tune_chains, leapfrog=leapfrog, target_accept=target_accept,
                   step_size=step_size, inputs=inputs, max_plate_nesting=max_plate_nesting, max_elements=max_elements,
                   progress=progress, estimator="bdmc")
    lower, acc_f, eps = _run(model, guide, x, None, forward=True, **options)
    # backwards with the forward run's step sizes, reversed: tuning chains started at the exact z would make
    # the kernels depend on the very state the reverse chains start from
    options.update(tune_chains=0)
    log_inv, acc_r, _ = _run(model, guide, x, z, forward=False, schedule=eps.flip(0), **options)
    upper = -log_inv
    out = result("bdmc", "bracket", lower, time.perf_counter() - start, steps=steps, chains=chains,
                 tune_chains=tune_chains, leapfrog=leapfrog, acceptance=acc_f.mean().item(),
                 reverse_acceptance=acc_r.mean().item())
    gap = result("gap", "", upper - lower, 0.0)
    up = result("upper", "", upper, 0.0)
    out.update(lower=out["estimate"], lower_se=out["se"], upper=up["estimate"], upper_se=up["se"],
               gap=gap["estimate"], gap_se=gap["se"], per_point_upper=upper)
    return out


@torch.no_grad()
def simulate(model, guide, x, inputs: dict | None = None, *, site: str = "x"):
    """(x_sim, z_sim [N, d]): N = len(x) draws (x, z) ~ p_θ(x, z), the model run with its observed site
    ``site`` sampled instead (``poutine.uncondition``); ``x`` gives only the shape (and the named inputs
    stay as given). z_sim is an exact draw from p_θ(z | x_sim)."""
    space = latent_space(model, guide, x, inputs, estimator="bdmc", needs=NEEDS)
    model_fn, _ = callables(model, guide)
    inputs = inputs or {}
    with user_code("the run's model fails when it simulates data", "; --bdmc needs a model that can sample x"):
        trace = poutine.trace(poutine.uncondition(model_fn)).get_trace(x, **inputs)
    if site not in trace.nodes or trace.nodes[site]["value"].shape != x.shape:
        raise UsageError(f"--bdmc simulates data from the model's observed site {site!r}, and this model has no such "
                         f"site of the data's shape {tuple(x.shape)}; BDMC needs a model that observes x there.")
    missing = [name for name, _ in space.sites if name not in trace.nodes]
    if missing:
        raise UsageError(f"the guide's site {missing[0]!r} is not a site of the model, so a draw from the model gives "
                         f"no exact posterior sample of it for --bdmc.")
    z = space.flatten({name: trace.nodes[name]["value"] for name, _ in space.sites}, 1)
    return trace.nodes[site]["value"].to(x.dtype), z

