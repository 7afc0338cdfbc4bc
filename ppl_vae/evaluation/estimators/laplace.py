"""The Laplace approximation of log p(x) (Tierney & Kadane 1986; MacKay 2003, ch. 27).

Around the mode z* = argmax_z log p_θ(x, z) of each point's log joint, a second-order
expansion log p_θ(x, z) ≈ log p_θ(x, z*) − ½ (z − z*)ᵀ H (z − z*) with H = −∇²_z log p_θ(x, z*)
integrates in closed form:

    log p(x) = log ∫ p_θ(x, z) dz  ≈  log p_θ(x, z*) + (d/2) log 2π − ½ log det H.

It is exact when the posterior p(z | x) is Gaussian (PPCA), and otherwise an approximation,
neither a lower nor an upper bound. It needs only the model: q_φ(z | x) is used as the starting
point (its mean; one draw for a guide with no closed-form mean, such as a flow), so a point-mass
guide is fine.

The mode is found for all points at once by damped Newton ascent (Levenberg–Marquardt): the
step Δ solves (H + λI) Δ = ∇_z log p_θ(x, z), taken only where it raises log p_θ(x, z), with λ
per point shrunk tenfold after a success and grown tenfold after a failure or where H + λI is
not positive definite. A point stops when ‖∇_z log p_θ(x, z)‖₂ ≤ ``tol`` (1e-3 by default), or
when no step raises log p_θ(x, z) by more than ``ftol`` = 1e-6 nats any more: a ReLU network's
log p_θ(x, z) is only piecewise smooth, and its maximum often sits on a kink where the gradient
does not vanish (on the digits VAE, three points in four; they are counted in ``not_stationary``,
and their mean log p_θ(x, z*) is within about 1e-3 nats of what many more steps reach). The
batched Hessians come from one forward pass on d copies of every point's z (the particle plate
carries them) and two backward passes: copy j of the gradient's coordinate j, differentiated
again, is row j of each point's Hessian — no loop over points or coordinates, and no ``vmap``
through the Pyro program.

A point whose H at the end is not positive definite (Cholesky fails: a saddle, or flat
directions the likelihood does not pin down) has no Laplace approximation; it is counted and
its index reported in ``not_positive_definite_indices``, and the mean is over the other points.
Points that reached neither criterion within ``max_steps`` are counted in ``not_converged``
(their value is kept: it is the approximation at the best z found).
"""

from __future__ import annotations

import math
import time

import torch
from tqdm.auto import tqdm

from ppl_vae.data import batch_inputs
from ppl_vae.evaluation.evaluate import max_elements_for
from ppl_vae.evaluation.estimators.target import Target, latent_space, result


NEEDS = ("real",)  # what latent_space checks: z in R^d, one vector per point; q only starts it


def derivatives(target: Target, z: torch.Tensor):
    """(log p_θ(x, z) [n], its gradient [n, d], H = −∇² [n, d, d]) at z [n, d]."""
    n, d = z.shape
    with torch.enable_grad():
        copies = z.detach().unsqueeze(0).repeat(d, 1, 1).requires_grad_(True)
        f = target.log_joint(copies)  # [d, n], the same values in every copy
        g, = torch.autograd.grad(f.sum(), copies, create_graph=True)
        own = torch.diagonal(g, dim1=0, dim2=2)  # [n, d]: copy j's coordinate j
        h, = torch.autograd.grad(own.sum(), copies, allow_unused=True) if own.requires_grad else (None,)
    hess = torch.zeros(n, d, d, dtype=z.dtype, device=z.device) if h is None else h.transpose(0, 1)
    return f[0].detach(), g[0].detach(), -0.5 * (hess + hess.transpose(1, 2)).detach()


def find_mode(target: Target, z: torch.Tensor, tol: float, max_steps: int, ftol: float = 1e-6):
    """Damped Newton ascent from z [n, d]: (z*, log p(x, z*), H at z*, stationary [n] bool, stalled [n] bool,
    steps taken). A point stops when ‖∇‖ ≤ ``tol`` (stationary) or when no step raises log p(x, z) by more
    than ``ftol`` nats any more (stalled: a step that was taken gained less, or the damping needed for a gain
    exceeds 1e8), as at a ReLU network's kink, where the gradient need not vanish at the maximum."""
    n, d = z.shape
    f, g, H = derivatives(target, z)
    damping = torch.zeros(n, dtype=z.dtype, device=z.device)
    stalled = torch.zeros(n, dtype=torch.bool, device=z.device)
    eye = torch.eye(d, dtype=z.dtype, device=z.device)
    slack = 64 * torch.finfo(z.dtype).eps  # a change of log p within rounding is not a failure
    steps = 0
    for steps in range(1, max_steps + 1):
        active = (g.norm(dim=-1) > tol) & ~stalled
        if not active.any():
            steps -= 1
            break
        chol, info = torch.linalg.cholesky_ex(H + damping[:, None, None] * eye)
        ok = active & (info == 0)
        damping = torch.where(active & (info != 0), (10 * damping).clamp_min(1e-4), damping)
        if ok.any():
            rows = ok.nonzero().squeeze(-1)
            step = torch.cholesky_solve(g[rows].unsqueeze(-1), chol[rows]).squeeze(-1)
            sub = Target(target.model, target.guide, target.space, target.x[rows], batch_inputs(target.inputs, rows),
                         max_plate_nesting=target.nesting)
            f_new, g_new, H_new = derivatives(sub, z[rows] + step)
            gain = f_new - f[rows]
            better = gain >= -slack * (1 + f[rows].abs())
            moved = rows[better]
            z, f, g, H = z.clone(), f.clone(), g.clone(), H.clone()
            z[moved], f[moved], g[moved], H[moved] = z[moved] + step[better], f_new[better], g_new[better], H_new[better]
            stalled[moved] = gain[better] < ftol
            damping[moved] = torch.where(damping[moved] > 1e-6, damping[moved] / 10, 0.0)
            damping[rows[~better]] = (10 * damping[rows[~better]]).clamp_min(1e-4)
        stalled |= damping > 1e8
    return z, f, H, g.norm(dim=-1) <= tol, stalled, steps


def laplace(model, guide, x, *, inputs: dict | None = None, tol: float = 1e-3, ftol: float = 1e-6, max_steps: int = 100,
            max_plate_nesting: int = 1, max_elements: int | None = None, progress: bool = False) -> dict:
    """The Laplace approximation of log p(x) per point of ``x`` [N, ...], in nats (see the module docstring).

    ``tol``: the gradient norm ‖∇_z log p_θ(x, z)‖₂ at which Newton's method stops; ``ftol``: the gain
    of log p_θ(x, z) in nats below which it stops where the gradient does not vanish (``not_stationary``:
    a kink of a ReLU network); ``max_steps`` Newton steps at most (``not_converged``: neither held). Chunks of points keep d × points × data dims within ``max_elements``."""
    start = time.perf_counter()
    space = latent_space(model, guide, x, inputs, estimator="laplace", needs=NEEDS)
    d, n = space.dim, x.shape[0]
    budget = max_elements or max_elements_for(x.device)
    batch = max(1, budget // (d * max(1, x[0].numel())))
    values, not_pd, not_stationary, not_converged, most_steps = [], [], 0, 0, 0
    with tqdm(total=n, desc="laplace", unit="point", disable=not progress, leave=False) as bar:
        for lo in range(0, n, batch):
            rows = slice(lo, lo + batch)
            target = Target(model, guide, space, x[rows], batch_inputs(inputs, rows),
                            max_plate_nesting=max_plate_nesting)
            z, f, H, stationary, stalled, steps = find_mode(target, target.guide_mean(), tol, max_steps, ftol)
            chol, info = torch.linalg.cholesky_ex(H)
            log_det = 2 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
            value = f + 0.5 * d * math.log(2 * math.pi) - 0.5 * log_det
            values.append(torch.where(info == 0, value, torch.nan))
            not_pd += (lo + (info != 0).nonzero().squeeze(-1)).tolist()
            not_stationary += int((~stationary & stalled & (info == 0)).sum())
            not_converged += int((~stationary & ~stalled & (info == 0)).sum())
            most_steps = max(most_steps, steps)
            bar.update(z.shape[0])
    per_point = torch.cat(values)
    kept = per_point[~per_point.isnan()]
    out = result("laplace", "approximation", kept, time.perf_counter() - start, points=n,
                 not_positive_definite=len(not_pd), not_positive_definite_indices=not_pd,
                 not_stationary=not_stationary, not_converged=not_converged, tol=tol, ftol=ftol,
                 newton_steps=most_steps)
    out["per_point"] = per_point
    return out
