"""Filling in missing pixels with a trained model (the lecture's missing-data demonstration).

An image splits into observed pixels x_o and missing pixels x_m (a mask). The model's
answer is the conditional p(x_m | x_o) = ∫ p_θ(x_m | z) p(z | x_o) dz, where, because the
pixels are independent given z, p(z | x_o) ∝ p(z) p_θ(x_o | z) ignores the missing ones.
The encoder q_φ(z | x) was trained on complete images only, so it cannot be given x_o
alone. We combine two steps:

1. Pseudo-Gibbs sampling (Rezende, Mohamed & Wierstra 2014, appendix F): fill x_m with the
   training set's mean image, then repeat z ~ q_φ(z | x̃), x̃_m ← E[x_m | z]. The completed
   image x̃ is plausible, but the chain targets p(x_m | x_o) only when q is the exact
   posterior, so we do not stop here. (We fill in E[x_m | z] rather than a draw: fewer
   steps reach a digit-like completion.)
2. Importance resampling, which makes the answer consistent whatever q is: draw
   z_k ~ q_φ(z | x̃), k = 1..K, weight w_k ∝ p(z_k) p_θ(x_o | z_k) / q_φ(z_k | x̃) (only
   the observed pixels enter), and resample z* with probabilities w_k. As K grows, z* is
   distributed as p(z | x_o) and Σ_k w̄_k E[x_m | z_k] tends to E[x_m | x_o]; step 1 only
   makes the proposal good, so that a moderate K suffices. The effective sample size
   (Σ w)² / Σ w² says how many of the K draws counted.

Completions keep every observed pixel exactly as it was and fill the missing ones with
E[x_m | z*].
"""

from __future__ import annotations

import torch
from torch.distributions import Independent

from ppl_vae.viz import figures

from ppl_vae.evaluation import latents
from ppl_vae.errors import UsageError
from ppl_vae.inference.chunks import MAX_ELEMENTS

MASKS = ("top-half", "random")
SIZE = (8.0, 5.4)  # inches of the figure; ×100 in pixels
MISSING_COLOUR = (0.55, 0.75, 1.0)  # light blue: pixels the model must fill in


def make_mask(kind: str, n: int, image_shape, *, fraction: float = 0.5, seed: int = 0, device="cpu") -> torch.Tensor:
    """Boolean [n, C·H·W], True where a pixel is missing: the top half of every image, or each
    pixel independently with probability ``fraction`` (seeded)."""
    c, h, w = image_shape
    if kind == "top-half":
        rows = torch.arange(h, device=device) < h // 2
        return rows[None, None, :, None].expand(n, c, h, w).reshape(n, -1)
    if kind == "random":
        if not 0 < fraction < 1:
            raise UsageError(f"--fraction must lie strictly between 0 and 1, got {fraction}.")
        g = torch.Generator(device=device).manual_seed(seed)
        return torch.rand(n, c * h * w, generator=g, device=device) < fraction
    raise UsageError(f"unknown mask {kind!r}; choose one of {', '.join(MASKS)}.")


def _pixels(likelihood) -> torch.distributions.Distribution:
    """The per-pixel distribution inside p(x | z), so observed pixels can be scored alone."""
    if not isinstance(likelihood, Independent):
        raise UsageError("imputation scores observed pixels alone, which needs a likelihood p(x|z) that "
                         "factorizes over pixels (a .to_event(1) distribution); this model's does not.")
    return likelihood.base_dist


@torch.no_grad()
def pseudo_gibbs(model, guide, x, missing, init, steps: int = 10) -> torch.Tensor:
    """x̃ after ``steps`` rounds of z ~ q(z | x̃), x̃_m ← E[x_m | z]; observed pixels kept."""
    x_hat = torch.where(missing, init, x)
    for _ in range(steps):
        z = latents.posterior(guide, x_hat).sample()
        x_hat = torch.where(missing, latents.decode(model, z, x.shape[1:]), x)
    return x_hat


@torch.no_grad()
def importance_resample(model, guide, x, missing, proposal_x, particles: int = 1000, draws: int = 3) -> dict:
    """Self-normalized importance sampling of p(z | x_o) with proposal q(z | proposal_x).

    Returns {'completions' [draws, N, D], 'mean' (the estimate of E[x | x_o]) [N, D],
    'ess' [N]}; every observed pixel equals x's.
    """
    n, d = x.shape
    per_chunk = max(1, MAX_ELEMENTS // (particles * d))
    out = {"completions": [], "mean": [], "ess": []}
    for start in range(0, n, per_chunk):
        xs, ms, ps = (t[start:start + per_chunk] for t in (x, missing, proposal_x))
        q = latents.posterior(guide, ps)
        z = q.sample((particles,))                                        # [K, n, latent]
        k, b = z.shape[:2]
        lik = latents.likelihood(model, z.reshape(k * b, -1), d)
        pixel_lp = _pixels(lik).log_prob(xs.expand(k, b, d).reshape(k * b, d)).reshape(k, b, d)
        log_w = (pixel_lp * ~ms).sum(-1) + latents.prior(model, xs).log_prob(z) - q.log_prob(z)
        w = torch.softmax(log_w, 0)                                      # [K, n]
        means = lik.mean.reshape(k, b, d)
        picked = torch.multinomial(w.T, draws, replacement=True).T       # [draws, n]
        out["completions"].append(torch.where(ms, means[picked, torch.arange(b)], xs))
        out["mean"].append(torch.where(ms, (w[..., None] * means).sum(0), xs))
        out["ess"].append(1.0 / w.pow(2).sum(0))
    return {"completions": torch.cat(out["completions"], 1), "mean": torch.cat(out["mean"]),
            "ess": torch.cat(out["ess"])}


def impute(model, guide, data, x, missing, *, particles: int = 1000, gibbs_steps: int = 10, draws: int = 3) -> dict:
    """Pseudo-Gibbs completion, then importance resampling (see the module doc).

    Returns importance_resample's dict plus 'gibbs' (the pseudo-Gibbs completion x̃)."""
    init = data.x_train.mean(0).expand_as(x)
    gibbs = pseudo_gibbs(model, guide, x, missing, init, gibbs_steps)
    result = importance_resample(model, guide, x, missing, gibbs, particles, draws)
    result["gibbs"] = gibbs
    return result


def errors(x, missing, result, train_mean) -> dict:
    """Mean squared error per missing pixel (the Brier score for binary pixels) of E[x_m | x_o],
    of the pseudo-Gibbs completion alone, and of the training set's mean image."""
    def mse(guess):
        return ((guess - x).pow(2) * missing).sum().item() / max(1, int(missing.sum()))
    return {"mse_importance": mse(result["mean"]), "mse_pseudo_gibbs": mse(result["gibbs"]),
            "mse_train_mean": mse(train_mean.expand_as(x))}


def draw(x, missing, result, image_shape, path: str, n: int = 10) -> str:
    """Rows: data, observed pixels (missing ones blue), resampled completions, E[x | x_o]."""
    draws = result["completions"].shape[0]
    grey = torch.stack([x[:n], *result["completions"][:, :n], result["mean"][:n]]).clamp(0, 1).cpu()
    paper = 1.0 - grey[..., None].expand(*grey.shape, 3)       # black ink on white, as RGB
    masked = paper[0].clone()
    masked[missing[:n].cpu()] = torch.tensor(MISSING_COLOUR)
    rows = torch.cat([paper[:1], masked[None], paper[1:]])      # [rows, n, D, 3]
    c, h, w = image_shape
    tiles = rows.reshape(*rows.shape[:2], c, h, w, 3)[:, :, 0].permute(0, 1, 4, 2, 3)  # RGB channels first
    labels = ["data", "observed", *[f"completion {i + 1}" for i in range(draws)], "E[x | observed]"]
    fig, ax = figures.figure(*SIZE)
    figures.show_mosaic(ax, figures.mosaic(tiles.reshape(*rows.shape[:2], -1).numpy(), (3, h, w), fill=0.88),
                        labels, "missing pixels (blue) filled in by importance resampling of p(z | observed)")
    fig.tight_layout()
    return figures.save(fig, path)

