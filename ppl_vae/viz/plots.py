"""Figures of what a trained model learned, as PNG files of fixed pixel sizes.

Every figure reads the model and guide through :mod:`ppl_vae.evaluation.latents` (q(z | x), p(z),
E[x | z]), so it works for any pair with one latent site ``z``; a pair that cannot provide
what a figure needs makes that figure raise a one-sentence :class:`UsageError`.

- ``reconstructions``: test images above E[x | z = E_q[z | x]];
- ``prior_samples``: E[x | z] for z ~ p(z);
- ``latent_means``: E_q[z | x] of the test set coloured by label (a PCA projection when the
  latent space has more than two dimensions);
- ``manifold``: E[x | z] over a grid of the prior's quantiles (Kingma & Welling 2014, fig. 4);
  with more than two latent dimensions, over the two most active units, the others at the
  prior's median;
- ``training``: train and test bound per epoch from ``metrics.jsonl``;
- ``kl_units``: KL(q(z_u | x) ‖ p(z_u)) per latent dimension and the activity
  Cov_x(E_q[z_u | x]) with the active-unit threshold 0.01 (Burda et al. 2016);
- ``interpolations``: E[x | z] along straight lines between the posterior means of pairs of
  test images;
- ``latent_path``: for a sequence model with an exact posterior (the LGSSM), paths z_{1:L} that the
  guide draws for one test sequence against the Kalman smoother's mean ± 2 standard deviations;
- ``canvas``: DRAW's canvas σ(c_t) after each of its T steps, for test images (z from the guide)
  and for draws from the prior;
- ``boxes``: AIR's inferred objects on test scenes, one box per z_pres_t = 1 at q's mode, with the
  inferred and the true count, above the reconstruction from those latents.
"""

from __future__ import annotations

import json
import os
import textwrap
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyro
import torch

from ppl_vae import registry
from ppl_vae.viz import figures

from ppl_vae.data import batch_inputs
from ppl_vae.evaluation import latents
from ppl_vae.errors import UsageError
from ppl_vae.io.rundir import METRICS, read_jsonl

LABEL_COLOURS = "tab10"
# (width, height) in inches; PNGs are 100 × that in pixels (figures.DPI)
SIZES = {
    "reconstructions": (8.0, 3.4),
    "prior_samples": (6.0, 6.4),
    "latent_means": (7.5, 6.0),
    "manifold": (7.0, 7.4),
    "training": (7.0, 4.5),
    "kl_units": (10.0, 4.2),
    "interpolations": (8.0, 4.4),
    "latent_path": (8.0, 4.0),
    "canvas": (8.0, 5.0),
    "boxes": (10.0, 3.8),
}


def examples(data, n: int) -> torch.Tensor:
    """Indices of n test images, cycling through the labels 0, 1, 2, ... when there are labels."""
    if data.y_test is None:
        return torch.arange(min(n, data.x_test.shape[0]))
    y = data.y_test.cpu()
    pools = [torch.nonzero(y == label).flatten().tolist() for label in torch.unique(y)]
    order = []
    while len(order) < min(n, len(y)):
        for pool in pools:
            if pool and len(order) < n:
                order.append(pool.pop(0))
    return torch.tensor(order)


def _grid(images: torch.Tensor, rows: int, cols: int) -> np.ndarray:
    return images.reshape(rows, cols, -1).clamp(0, 1).cpu().numpy()


def reconstructions(model, guide, data, path: str, n: int = 10, inputs: dict | None = None) -> str:
    """Two rows of test images, each above its reconstruction E[x | z = E_q[z | x]]; ``inputs``: the test
    set's named inputs, for a pair that takes them (each image's own)."""
    idx = examples(data, 2 * n).to(data.device)
    x, given = data.x_test[idx], batch_inputs(inputs, idx)
    if x.shape[0] < 2 * n:
        raise UsageError(f"the test set has {x.shape[0]} images; the reconstruction figure needs {2 * n}.")
    recon = latents.decode(model, latents.posterior_means(guide, x, inputs=given), data.x_shape, given)
    x, recon = x.flatten(1), recon.flatten(1)  # for the mosaic, whatever shape the program takes
    rows = torch.stack([x[:n], recon[:n], x[n:], recon[n:]])
    fig, ax = figures.figure(*SIZES["reconstructions"])
    figures.show_mosaic(ax, figures.mosaic(_grid(rows, 4, n), data.image_shape),
                        ["data", "reconstruction", "data", "reconstruction"],
                        "test images and their reconstructions E[x | z = E_q[z | x]]")
    fig.tight_layout()
    return figures.save(fig, path)


def prior_samples(model, data, path: str, n: int = 10, inputs: dict | None = None) -> str:
    """An n × n grid of E[x | z] for z ~ p(z); with ``inputs``, row i given those of one test image
    (the labels cycle through the classes)."""
    like = data.x_test[:1].expand(n * n, *data.x_shape)
    rows = examples(data, n).to(data.device).repeat_interleave(n) if inputs else None
    given = batch_inputs(inputs, rows) if inputs else None
    p = latents.prior(model, like, given)
    z = p.sample() if p.batch_shape == (n * n,) else p.sample((n * n,))  # batch shape [N] or []
    images = latents.decode(model, z, data.x_shape, given)
    fig, ax = figures.figure(*SIZES["prior_samples"])
    names = ", ".join(inputs or ())
    title = (f"E[x | z, {names}] for {n * n} draws z ~ p(z), each row's {names} a test image's" if inputs
             else f"E[x | z] for {n * n} draws z ~ p(z)")
    figures.show_mosaic(ax, figures.mosaic(_grid(images, n, n), data.image_shape), title=title)
    fig.tight_layout()
    return figures.save(fig, path)


def latent_means(guide, data, path: str, inputs: dict | None = None) -> str:
    """Scatter of E_q[z | x] over the test set, coloured by label; PCA projection above 2-D."""
    from sklearn.decomposition import PCA

    means = latents.posterior_means(guide, data.x_test, inputs=inputs).cpu().numpy()
    d = means.shape[1]
    fig, ax = figures.figure(*SIZES["latent_means"])
    if d > 2:
        pca = PCA(2).fit(means)
        xy = pca.transform(means)
        share = pca.explained_variance_ratio_ * 100
        ax.set_xlabel(f"PC 1 ({share[0]:.0f}% of the variance)")
        ax.set_ylabel(f"PC 2 ({share[1]:.0f}% of the variance)")
        title = f"E_q[z | x] of {len(means)} test images: PCA projection of {d}-D means"
    elif d == 2:
        xy = means
        ax.set_xlabel("E_q[z₁ | x]")
        ax.set_ylabel("E_q[z₂ | x]")
        title = f"E_q[z | x] of {len(means)} test images"
    else:
        labels = data.y_test.cpu().numpy() if data.y_test is not None else np.zeros(len(means))
        xy = np.stack([means[:, 0], labels + np.random.RandomState(0).uniform(-0.3, 0.3, len(means))], 1)
        ax.set_xlabel("E_q[z | x]")
        ax.set_ylabel("label (jittered)")
        title = f"E_q[z | x] of {len(means)} test images (1-D latent)"
    if data.y_test is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=8, alpha=0.7)
    else:
        y = data.y_test.cpu().numpy()
        points = ax.scatter(xy[:, 0], xy[:, 1], c=y, cmap=LABEL_COLOURS, vmin=-0.5, vmax=9.5, s=10, alpha=0.8)
        handles, names = points.legend_elements()
        ax.legend(handles, names, title="label", loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_title(title)
    fig.tight_layout()
    return figures.save(fig, path)


def manifold(model, guide, data, path: str, n: int = 15, lo: float = 0.05, hi: float = 0.95,
             inputs: dict | None = None) -> str:
    """E[x | z] over an n × n grid of the prior's quantiles lo…hi in two latent dimensions."""
    if inputs:
        raise UsageError(f"the manifold figure decodes a grid of z alone, and this run's pair also takes "
                         f"{', '.join(inputs)}; the prior samples show E[x | z] given them.")
    like = data.x_test[:1]
    marginals = latents.normal_marginals(latents.prior(model, like))
    if marginals is None:
        raise UsageError("the manifold figure walks the quantiles of a Gaussian prior; this model's p(z) is not one.")
    loc, scale = (m.reshape(-1, m.shape[-1])[0] for m in marginals)  # one row if batch shape [N]
    d = loc.shape[-1]
    if d == 1:
        raise UsageError("the manifold figure needs at least two latent dimensions; this model has one.")
    if d == 2:
        a, b = 0, 1
        note = ""
    else:
        order = latents.activity(latents.posterior_means(guide, data.x_test)).argsort(descending=True)
        a, b = sorted(order[:2].tolist())
        note = f", the {d - 2} others at the prior's median"
    q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(lo, hi, n, device=loc.device))
    z = loc.repeat(n * n, 1)
    z[:, a] = (loc[a] + scale[a] * q).repeat(n)                     # left to right
    z[:, b] = (loc[b] + scale[b] * q.flip(0)).repeat_interleave(n)  # bottom to top
    images = latents.decode(model, z, data.x_shape)
    fig, ax = figures.figure(*SIZES["manifold"])
    figures.show_mosaic(ax, figures.mosaic(_grid(images, n, n), data.image_shape),
                        title=f"E[x | z] over prior quantiles {lo:.0%}…{hi:.0%}")
    ax.set_xlabel(f"z{a + 1} →")
    ax.set_ylabel(f"z{b + 1} →")
    if note:
        ax.set_title(f"E[x | z] over prior quantiles {lo:.0%}…{hi:.0%} of the two most active units\n"
                     f"(z{a + 1}, z{b + 1}{note})", fontsize=10)
    fig.tight_layout()
    return figures.save(fig, path)


def training_curves(run_dir: str, path: str, names: tuple[str, str] = ("bound", "bound")) -> str:
    """Train and test bound per epoch (and −NLL from eval.json when the run was evaluated); ``names``: what the
    training value and the test bound are (:func:`ppl_vae.registry.train_name`, ``bound_name``)."""
    rows = read_jsonl(os.path.join(run_dir, METRICS))
    if not rows:
        raise UsageError(f"{run_dir} has no metrics.jsonl rows; train the run for at least one epoch.")
    epochs = [r["epoch"] for r in rows]
    fig, ax = figures.figure(*SIZES["training"])
    shown = []
    labels = (textwrap.fill(f"train: {names[0]}", 40), textwrap.fill(f"test: {names[1]}", 40))
    for key, label in zip(("train_bound", "test_bound"), labels):
        values = [r.get(key) for r in rows]
        if any(v is not None for v in values):
            ax.plot(epochs, [np.nan if v is None else v for v in values], label=label, marker="." if len(rows) < 30 else None)
            shown += [v for v in values[len(values) // 10:] if v is not None]
    eval_path = os.path.join(run_dir, "eval.json")
    if os.path.isfile(eval_path):
        with open(eval_path) as f:
            ev = json.load(f)
        if "test_nll" in ev:  # a point-mass guide's eval.json has no log p(x)
            how = "exact" if ev.get("estimate") == "exact" else f"K = {ev['particles']}"
            ax.axhline(-ev["test_nll"], color="k", ls="--", lw=1,
                       label=f"test log p(x), {how} (epoch {ev.get('epoch', '?')})")
            shown.append(-ev["test_nll"])
    if shown:  # the first epochs' bounds are far below; keep the rest readable
        lo, hi = min(shown), max(shown)
        pad = 0.1 * (hi - lo) or 1.0
        ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per example (higher is better)")
    ax.set_title("bounds on log p(x) during training" if "not a bound" not in names[0] else "training")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return figures.save(fig, path)


def kl_units(model, guide, data, path: str, stats: dict | None = None, inputs: dict | None = None) -> str:
    """KL(q(z_u | x) ‖ p(z_u)) per dimension and the activity Cov_x(E_q[z_u | x]) per unit."""
    stats = stats or latents.summary(model, guide, data.x_test, inputs=inputs)
    act = np.array(stats["activity"])
    d = len(act)
    active = act > latents.ACTIVE_THRESHOLD
    colours = np.where(active, "tab:blue", "tab:gray")
    units = np.arange(1, d + 1)
    fig, (left, right) = figures.figure(*SIZES["kl_units"], ncols=2)
    if stats["kl_per_dim"] is not None:
        left.bar(units, stats["kl_per_dim"], color=colours)
        left.set_ylabel("nats (mean over test images)")
        left.set_title(f"KL(q(z_u | x) ‖ p(z_u)) per unit\ntotal KL(q(z | x) ‖ p(z)) = {stats['kl_mean']:.2f} nats")
    else:
        total = ("not known: q(z | x) has no closed-form density" if stats["kl_mean"] is None
                 else f"{stats['kl_mean']:.2f} nats")
        left.text(0.5, 0.5, f"total KL(q(z | x) ‖ p(z)) {'' if stats['kl_mean'] is None else '= '}{total}\n"
                            f"(per-unit KL needs Gaussian marginals)", ha="center", va="center",
                  transform=left.transAxes)
        left.set_title("KL(q(z | x) ‖ p(z))")
    right.bar(units, np.maximum(act, 1e-6), color=colours)
    right.axhline(latents.ACTIVE_THRESHOLD, color="k", ls="--", lw=1)
    right.set_yscale("log")
    right.set_ylabel("Cov_x(E_q[z_u | x]) (log scale)")
    right.set_title(f"activity Cov_x(E_q[z_u | x]) per unit\n{int(active.sum())} of {d} active (above 0.01, dashed)")
    for ax in (left, right):
        ax.set_xlabel("latent unit u")
        if d <= 20:
            ax.set_xticks(units)
    fig.tight_layout()
    return figures.save(fig, path)


def interpolations(model, guide, data, path: str, pairs: int = 6, steps: int = 10, inputs: dict | None = None) -> str:
    """Rows: a test image, E[x | z] along the line between two posterior means, the other image."""
    if inputs:
        raise UsageError(f"the interpolation figure decodes z between two test images, and this run's pair also "
                         f"takes {', '.join(inputs)}, which the two need not share.")
    idx = examples(data, 2 * pairs).to(data.device)
    if idx.numel() < 2 * pairs:
        raise UsageError(f"the test set has {idx.numel()} images; the interpolation figure needs {2 * pairs}.")
    x = data.x_test[idx]
    m = latents.posterior_means(guide, x)
    start, end = m[0::2], m[1::2]
    t = torch.linspace(0, 1, steps, device=m.device)[None, :, None]
    z = (1 - t) * start[:, None] + t * end[:, None]                   # [pairs, steps, d]
    decoded = latents.decode(model, z.reshape(pairs * steps, -1), data.x_shape).reshape(pairs, steps, -1)
    x = x.flatten(1)
    blank = torch.zeros_like(x[0::2, None])  # sets the test images apart from the decoded ones
    rows = torch.cat([x[0::2, None], blank, decoded, blank, x[1::2, None]], 1)
    fig, ax = figures.figure(*SIZES["interpolations"])
    figures.show_mosaic(ax, figures.mosaic(_grid(rows, pairs, steps + 4), data.image_shape),
                        title="E[x | z] along z = (1 − t) E_q[z | a] + t E_q[z | b], t = 0…1")
    ax.set_xlabel("test image a  |  decoded interpolation  |  test image b")
    fig.tight_layout()
    return figures.save(fig, path)


def latent_path(model, guide, data, path: str, draws: int = 20, inputs: dict | None = None) -> str:
    """Paths z_{1:L} drawn by the guide for the first test sequence, one panel per latent dimension, against
    the posterior marginals p(z_t | x_{1:L}) that the model's Kalman smoother computes exactly."""
    module = getattr(model, "__self__", model)
    if not hasattr(module, "smoother"):
        raise UsageError(f"the latent-path figure sets the guide's paths against the exact posterior, and "
                         f"{type(module).__name__} has no Kalman smoother (the lgssm model has).")
    x, given = data.x_test[:1], batch_inputs(inputs, slice(0, 1))
    length = int(given["lengths"][0]) if "lengths" in given else x.shape[1]
    with torch.no_grad():
        mean, cov = (v[0, :length].cpu() for v in module.smoother(x, given.get("lengths")))
        paths = []
        for _ in range(draws):
            trace = pyro.poutine.trace(guide).get_trace(x, **given)
            paths.append(torch.stack([trace.nodes[f"z_{t}"]["value"][0] for t in range(length)]).cpu())
    paths, sd, steps = torch.stack(paths), cov.diagonal(dim1=-2, dim2=-1).sqrt(), np.arange(1, length + 1)
    k = mean.shape[-1]
    fig, axes = figures.figure(*SIZES["latent_path"], ncols=k, squeeze=False)
    for d, ax in enumerate(axes[0]):
        ax.fill_between(steps, mean[:, d] - 2 * sd[:, d], mean[:, d] + 2 * sd[:, d], color="tab:blue", alpha=0.2,
                        label="Kalman smoother ± 2 sd")
        ax.plot(steps, mean[:, d], color="tab:blue", lw=2, label="Kalman smoother mean")
        ax.plot(steps, paths[..., d].T, color="0.3", lw=0.6, alpha=0.5)
        ax.plot([], [], color="0.3", lw=0.6, label=f"{draws} paths from the guide")
        ax.set_xlabel("time step t")
        ax.set_title(f"z_t, dimension {d + 1}")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("a test sequence's latent path: the guide's draws against the exact posterior")
    fig.tight_layout()
    return figures.save(fig, path)


def canvas(model, data, path: str, n: int = 4) -> str:
    """DRAW's canvas σ(c_t) after each step t = 1…T: n test images drawn from the guide's z, n from the prior's."""
    module = getattr(model, "__self__", model)
    if not hasattr(module, "canvases"):
        raise UsageError(f"the canvas figure shows a canvas drawn step by step, which {type(module).__name__} does "
                         f"not draw (the draw model does).")
    with torch.no_grad():
        seen, dreamt = module.canvases(data.x_test[:n]).cpu(), module.generate(n).cpu()  # [T, n, D]
    steps = seen.shape[0]
    rows = torch.cat([seen, dreamt], 1).transpose(0, 1)  # [2n, T, D]
    fig, ax = figures.figure(*SIZES["canvas"])
    figures.show_mosaic(ax, figures.mosaic(rows.numpy(), data.image_shape),
                        [f"test {i + 1}" for i in range(n)] + [f"prior {i + 1}" for i in range(n)],
                        "the canvas σ(c_t) after each step")
    ax.set_xlabel(f"step t = 1 … {steps}")
    fig.tight_layout()
    return figures.save(fig, path)
def boxes(model, data, path: str, n: int = 8) -> str:
    """Test scenes with AIR's inferred boxes (q's mode: :meth:`~ppl_vae.models.air.AIR.infer_scene`), a colour
    per step, titled inferred / true count, above the model's mean image from the same latents."""
    module = getattr(model, "__self__", model)
    if not hasattr(module, "infer_scene"):
        raise UsageError(f"the boxes figure shows the objects a scene model infers, and {type(module).__name__} "
                         f"infers none (the air model does).")
    x = data.x_test[:n]
    with torch.no_grad():
        scene = module.infer_scene(x)
        boxes, recon = module.boxes(scene["z_where"]).cpu(), module.render(**scene).cpu()
    present, side = scene["z_pres"].cpu(), data.image_shape[-1]
    fig, axes = figures.figure(*SIZES["boxes"], nrows=2, ncols=n, squeeze=False)
    colours = ["tab:red", "tab:blue", "tab:green", "tab:orange"]
    for i in range(n):
        for row, image in enumerate((x[i], recon[i])):
            ax = axes[row][i]
            ax.imshow(1.0 - image.cpu().reshape(side, side).clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1,
                      extent=(0, side, side, 0), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            for t in range(present.shape[1]):
                if present[i, t] > 0:
                    x0, y0, w, h = boxes[i, t].tolist()
                    ax.add_patch(figures.pyplot().Rectangle((x0, y0), w, h, fill=False, lw=1.5,
                                                            edgecolor=colours[t % len(colours)]))
        truth = f" / {int(data.y_test[i])}" if data.y_test is not None else ""
        axes[0][i].set_title(f"{int(present[i].sum())}{truth}", fontsize=9)
    axes[0][0].set_ylabel("test scene")
    axes[1][0].set_ylabel("reconstruction")
    fig.suptitle("AIR's inferred objects (q's mode), one colour per step; title: inferred / true count")
    fig.tight_layout()
    return figures.save(fig, path)


@dataclass
class Figure:
    name: str
    title: str
    caption: str
    draw: Callable  # (run, path, stats) -> path


FIGURES = [
    Figure("reconstructions", "Reconstructions",
           "Test images (rows 1 and 3) and their reconstructions E[x | z] at z = E_q[z | x].",
           lambda r, p, s: reconstructions(r.model, r.guide, r.data, p, inputs=_inputs(r))),
    Figure("prior_samples", "Samples from the prior",
           "E[x | z] for z drawn from the prior p(z): what the model generates.",
           lambda r, p, s: prior_samples(r.model, r.data, p, inputs=_inputs(r))),
    Figure("latent_means", "The latent space",
           "Posterior means E_q[z | x] of the test images, coloured by label.",
           lambda r, p, s: latent_means(r.guide, r.data, p, inputs=_inputs(r))),
    Figure("manifold", "The learned manifold",
           "The decoder over a grid of the prior's quantiles: the learned manifold.",
           lambda r, p, s: manifold(r.model, r.guide, r.data, p, inputs=_inputs(r))),
    Figure("training", "Training curves",
           "Train and test bound per epoch (nats per example).",
           lambda r, p, s: training_curves(r.dir, p, (registry.train_name(r.config), registry.bound_name(r.config)))),
    Figure("kl_units", "KL per unit and active units",
           "KL per latent unit and the active units (Cov_x(E_q[z_u | x]) > 0.01, Burda et al. 2016).",
           lambda r, p, s: kl_units(r.model, r.guide, r.data, p, s, inputs=_inputs(r))),
    Figure("interpolations", "Interpolations",
           "Decoded straight lines between the posterior means of pairs of test images.",
           lambda r, p, s: interpolations(r.model, r.guide, r.data, p, inputs=_inputs(r))),
    Figure("latent_path", "A sequence's latent path",
           "Paths z_{1:L} the guide draws for a test sequence against the Kalman smoother's exact posterior.",
           lambda r, p, s: latent_path(r.model, r.guide, r.data, p, inputs=_inputs(r))),
    Figure("canvas", "The canvas, step by step",
           "DRAW's canvas after each step: test images (z from the guide), then draws from the prior.",
           lambda r, p, s: canvas(r.model, r.data, p)),
    Figure("boxes", "Inferred objects",
           "AIR's boxes on test scenes at q's mode, inferred / true count above each, reconstructions below.",
           lambda r, p, s: boxes(r.model, r.data, p)),
]
NAMES = [f.name for f in FIGURES]


def _inputs(run) -> dict:
    """The test set's named inputs that the run's pair takes (labels of a conditional model), or {}."""
    return run.inputs("test") if hasattr(run, "inputs") else {}


def draw_all(run, out_dir: str, names=None, stats: dict | None = None) -> tuple[dict, dict]:
    """Draw the figures ``names`` (default: all) of a loaded run into ``out_dir``.

    Returns ({name: path} of the figures drawn, {name: reason} of those the pair cannot give).
    """
    drawn, skipped = {}, {}
    for fig in FIGURES:
        if names is not None and fig.name not in names:
            continue
        try:
            drawn[fig.name] = fig.draw(run, os.path.join(out_dir, f"{fig.name}.png"), stats)
        except UsageError as e:
            skipped[fig.name] = str(e)
    return drawn, skipped
