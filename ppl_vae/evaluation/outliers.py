"""Outlier detection with a trained model: is a test image like the training data?

Two scores per image, higher meaning more unusual:

- KL(q_φ(z | x) ‖ p(z)), the lecture's score: the encoder places an image like the training
  data where the prior has mass, and an unusual one far from it (analytic for a diagonal
  Gaussian q, Monte-Carlo otherwise; see :mod:`ppl_vae.evaluation.latents`);
- −log p̂_K(x), the importance-sampled negative log-likelihood with K particles from the
  guide (:func:`ppl_vae.evaluation.evaluate.per_point`; Burda et al. 2016).

Each score is judged by its AUROC for telling the test set (negatives) from an
out-of-distribution set (positives): the probability that a random outlier scores higher
than a random test image, ties counting one half — the Mann–Whitney U statistic divided
by n_in · n_out. 0.5 is chance, 1 is perfect.

Out-of-distribution sets, made to look like the run's data (same image shape, binarized by
a seeded draw when the run's data is binarized):

- ``noise``: independent pixels with the test set's mean grey level;
- ``flipped``: the test images upside down;
- ``mnist``, ``fashion-mnist``: their test split from ``--data-dir``, area-averaged down
  when the images are larger than the run's (e.g. 28×28 → 8×8 for digits) and
  zero-padded when smaller.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ppl_vae import data as datasets
from ppl_vae.viz import figures
from ppl_vae.evaluation import latents
from ppl_vae.errors import UsageError
from ppl_vae.evaluation.evaluate import per_point
from ppl_vae.pair import as_pyro_callable

OOD = ("noise", "flipped", "fashion-mnist", "mnist")
SIZE = (10.0, 6.0)  # inches of the histogram figure; ×100 in pixels


def auroc(score_in, score_out) -> float:
    """P(score_out > score_in) + ½ P(tie): the area under the ROC curve with outliers positive."""
    score_in, score_out = np.asarray(score_in, float).ravel(), np.asarray(score_out, float).ravel()
    if not (len(score_in) and len(score_out)):
        raise UsageError("AUROC needs at least one in-distribution and one out-of-distribution score.")
    from scipy.stats import rankdata  # scipy.stats takes 0.6 s to import; only this needs it

    ranks = rankdata(np.concatenate([score_in, score_out]))  # ties get their average rank
    n_in, n_out = len(score_in), len(score_out)
    return float((ranks[n_in:].sum() - n_out * (n_out + 1) / 2) / (n_in * n_out))


def fit_shape(images: torch.Tensor, shape) -> torch.Tensor:
    """Grey images [N, C, h, w] -> [N, C·H·W] for ``shape`` = (C, H, W): area-averaged when
    larger, zero-padded (centred) when smaller."""
    c, h, w = shape
    if images.shape[1] != c:
        raise UsageError(f"the out-of-distribution images have {images.shape[1]} channel(s) and the run's {c}; "
                         f"choose an --ood set with {c}-channel images.")
    if images.shape[2] > h or images.shape[3] > w:
        images = F.interpolate(images, size=(min(h, images.shape[2]), min(w, images.shape[3])), mode="area")
    dh, dw = h - images.shape[2], w - images.shape[3]
    images = F.pad(images, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))
    return images.reshape(images.shape[0], -1)


def ood_images(name: str, data, *, n: int, data_dir: str = "data", download: bool = False,
               seed: int = 0) -> torch.Tensor:
    """n out-of-distribution images [n, D] looking like ``data``'s test set (see module doc)."""
    if name not in OOD:
        raise UsageError(f"unknown --ood set {name!r}; choose one of {', '.join(OOD)}.")
    if name == data.name:
        raise UsageError(f"--ood {name} is the run's own dataset; choose another set, e.g. noise or flipped.")
    g = torch.Generator(device=data.device).manual_seed(seed)
    if name == "noise":
        grey = data.x_test.mean().expand(n, data.x_dim).contiguous()
        if data.binarize == "none":
            return torch.rand(n, data.x_dim, generator=g, device=data.device) * 2 * grey
        return torch.bernoulli(grey, generator=g)
    if name == "flipped":
        images = data.x_test[:n].reshape(-1, *data.image_shape)
        return images.flip(-2).reshape(images.shape[0], -1)
    other = datasets.load(name, data_dir=data_dir, download=download, binarize="none", device=data.device)
    grey = fit_shape(other.x_test[:n].reshape(-1, *other.image_shape), data.image_shape)
    return grey if data.binarize == "none" else torch.bernoulli(grey, generator=g)


@torch.no_grad()
def scores(model, guide, x: torch.Tensor, particles: int = 100) -> dict:
    """{'kl': KL(q(z|x) ‖ p(z)), 'nll': −log p̂_K(x)} per image, each a tensor [N]."""
    _, log_p = per_point(as_pyro_callable(model, "model"), as_pyro_callable(guide, "guide"), x, particles)
    return {"kl": latents.kl_per_point(model, guide, x), "nll": -log_p}


SCORE_LABELS = {"kl": "KL(q(z | x) ‖ p(z)) (nats)", "nll": "−log p̂(x) (nats)"}


def detect(model, guide, data, ood: str, *, n: int = 1000, particles: int = 100, data_dir: str = "data",
           download: bool = False, seed: int = 0):
    """Score ``n`` test images and ``n`` images of the ``ood`` set; returns (results, x_out, raw
    scores) where results holds the AUROC of each score and the mean scores, as plain numbers."""
    x_in = data.x_test[:n]
    x_out = ood_images(ood, data, n=x_in.shape[0], data_dir=data_dir, download=download, seed=seed)
    x_out = x_out.reshape(x_out.shape[0], *data.x_shape)  # in the shape the program takes
    s_in, s_out = scores(model, guide, x_in, particles), scores(model, guide, x_out, particles)
    results = {"ood": ood, "dataset": data.name, "n_in": int(x_in.shape[0]), "n_out": int(x_out.shape[0]),
               "particles": particles, "seed": seed}
    for key in SCORE_LABELS:
        results[f"auroc_{key}"] = auroc(s_in[key].cpu(), s_out[key].cpu())
        results[f"{key}_in_mean"] = s_in[key].mean().item()
        results[f"{key}_out_mean"] = s_out[key].mean().item()
    return results, x_out, {"in": s_in, "out": s_out}


def histograms(results: dict, raw: dict, x_in: torch.Tensor, x_out: torch.Tensor, image_shape, path: str,
               n_images: int = 12) -> str:
    """Examples of both sets above the histograms of each score, AUROC in the titles."""
    fig, axes = figures.figure(*SIZE, nrows=2, ncols=2, gridspec_kw={"height_ratios": [1, 2.4]})
    for ax in axes[0]:
        ax.remove()
    top = fig.add_subplot(axes[1, 0].get_gridspec()[0, :])
    k = min(n_images, x_in.shape[0], x_out.shape[0])
    rows = torch.stack([x_in[:k], x_out[:k]]).clamp(0, 1).cpu().numpy()
    figures.show_mosaic(top, figures.mosaic(rows, image_shape), ["test", results["ood"]],
                        f"{results['dataset']} test images and {results['ood']} images")
    for ax, key in zip(axes[1], SCORE_LABELS):
        s_in, s_out = raw["in"][key].cpu().numpy(), raw["out"][key].cpu().numpy()
        both = np.concatenate([s_in, s_out])
        log = both.min() > 0 and both.max() / both.min() > 20  # noise scores can be far above the data's
        bins = np.geomspace(both.min(), both.max(), 40) if log else np.linspace(both.min(), both.max(), 40)
        ax.hist(s_in, bins, alpha=0.6, label=f"{results['dataset']} test")
        ax.hist(s_out, bins, alpha=0.6, label=results["ood"])
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(SCORE_LABELS[key])
        ax.set_ylabel("images")
        ax.set_title(f"AUROC {results[f'auroc_{key}']:.3f}")
        ax.legend()
    fig.tight_layout()
    return figures.save(fig, path)

