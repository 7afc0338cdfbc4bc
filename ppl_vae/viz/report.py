"""``report.md``: one Markdown page with a run's numbers and figures, for reading or a slide.

The page holds the training and test bounds (``metrics.jsonl``), the importance-sampled NLL
(``eval.json``, when ``ppl-vae evaluate`` was run), the active units and KL of the latent
space, every figure of :mod:`ppl_vae.viz.plots` the pair can give, the outlier and imputation
results already in the run directory (``outliers-*.json``, ``impute-*.json``), and the
configuration. Links are relative to the run directory and point only at files that exist.
The numbers are also written to ``report.json``.
"""

from __future__ import annotations

import glob
import json
import os

from ppl_vae import registry
from ppl_vae.evaluation import latents
from ppl_vae.evaluation.evaluate import mc, quantity_of

from ppl_vae.viz import plots
from ppl_vae.errors import UsageError
from ppl_vae.io.rundir import METRICS, read_jsonl, write_json
from ppl_vae.pair import owning_module
from ppl_vae.text import count

NAME = "report.md"


def _read_json(path: str) -> dict | None:
    try:
        with open(path) as f:
            value = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def numbers(run, stats: dict) -> dict:
    """The report's numbers: last and best bounds, eval.json's estimates, latent statistics."""
    rows = read_jsonl(os.path.join(run.dir, METRICS))
    out = {"epoch": run.epoch}
    if rows:
        last = rows[-1]
        out.update(train_bound=last.get("train_bound"), test_bound=last.get("test_bound"))
        tested = [r for r in rows if r.get("test_bound") is not None]
        if tested:
            best = max(tested, key=lambda r: r["test_bound"])
            out.update(best_test_bound=best["test_bound"], best_epoch=best["epoch"])
    ev = _read_json(os.path.join(run.dir, "eval.json"))
    if ev:
        out["eval"] = {k: ev.get(k) for k in ("estimate", "test_elbo", "test_elbo_se", "test_nll", "test_nll_se",
                                              "test_elbo_mc_se", "test_nll_mc_se",
                                              "test_objective", "test_objective_se", "quantity", "given", "observed", "particles", "n", "epoch",
                                              "estimators")}
    out["latent"] = stats
    module = owning_module(run.model)
    if hasattr(module, "count_accuracy") and run.data.y_test is not None:  # AIR on scenes with known counts
        accuracy, n = module.count_accuracy(run.data.x_test, run.data.y_test), int(run.data.y_test.shape[0])
        out["count_accuracy"] = {"accuracy": accuracy, "se": (accuracy * (1 - accuracy) / n) ** 0.5, "n": n}
    return out


def _link(run_dir: str, rel: str | None, alt: str) -> str:
    """A Markdown image, or an empty string when the file is missing."""
    if rel and os.path.isfile(os.path.join(run_dir, rel)):
        return f"![{alt}]({rel.replace(os.sep, '/')})"
    return ""


def _fmt(value, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(run, nums: dict, drawn: dict, skipped: dict) -> str:
    """The page itself."""
    c, lat = run.config.to_dict(), nums["latent"]
    pair = (f"Your own pair `{c['pair']}`" if c.get("pair") else
            f"Model `{c.get('model')}` with guide `{c.get('guide')}`, latent dimension "
            f"{lat.get('latent_dim', c.get('latent_dim'))}")
    lines = [f"# Run report: `{run.dir}`", "",
             f"{pair}, "
             f"trained on `{c.get('dataset')}` (binarization `{c.get('binarize')}`) with the objective "
             f"`{c.get('objective')}` (K = {c.get('particles')}) for {count(nums['epoch'], 'epoch')}. "
             "All values are in nats per test image; bounds are log-likelihoods (higher is better); ± is the "
             "standard error over the test points, MC ± the estimate's Monte Carlo standard error (delta method).", "",
             "## Numbers", "", "| quantity | value |", "|---|---|"]
    train, test = registry.train_name(run.config), registry.bound_name(run.config)
    lines.append(f"| train {train}, last epoch | {_fmt(nums.get('train_bound'))} |")
    lines.append(f"| test {test}, last epoch | {_fmt(nums.get('test_bound'))} |")
    if "best_test_bound" in nums:
        lines.append(f"| best test {test} (epoch {nums['best_epoch']}) | {_fmt(nums['best_test_bound'])} |")
    ev = nums.get("eval")
    estimate = ev.get("estimate", "importance-sampled") if ev else None  # older eval.json files: IS
    if ev and ev.get("estimators"):  # `evaluate --estimator`: one row per estimator
        for name, entry in ev["estimators"].items():
            if name == "bdmc":
                lines.append(f"| log p(x) of as many points simulated from the model, BDMC bracket (eval.json, T = {entry['steps']}) | "
                             f"[{_fmt(entry['lower'])}, {_fmt(entry['upper'])}] |")
            else:
                lines.append(f"| test log p(x), {name}: {entry['quantity']} (eval.json) | "
                             f"{_fmt(entry['estimate'])} ± {_fmt(entry['se'])} |")
    elif estimate == "exact":
        lines.append(f"| test NLL = −log p(x), exact (eval.json) | {_fmt(ev['test_nll'])} ± {_fmt(ev['test_nll_se'])} |")
    elif estimate in ("not a bound", "given global latents"):
        quantity = (ev.get("quantity") or "log p(x | z) + log p(z) at the point-mass guide's z").replace("|", "\\|")
        lines.append(f"| test {quantity} (eval.json; not a bound on log p(x)) | "
                     f"{_fmt(ev['test_objective'])} ± {_fmt(ev['test_objective_se'])} |")
    elif ev:
        lines.append(f"| test ELBO (eval.json, K = {ev['particles']}) | {_fmt(ev['test_elbo'])} ± {_fmt(ev['test_elbo_se'])}"
                     f"{mc(ev, 'test_elbo')} |")
        quantity = quantity_of(ev).replace("log p(", "log p̂(").replace("|", "\\|")
        lines.append(f"| test NLL = −{quantity} (eval.json, importance-sampled, K = {ev['particles']}) | "
                     f"{_fmt(ev['test_nll'])} ± {_fmt(ev['test_nll_se'])}{mc(ev, 'test_nll')} |")
    else:
        lines.append(f"| test NLL | not estimated; run `ppl-vae evaluate {run.dir}` |")
    if "count_accuracy" in nums:
        acc = nums["count_accuracy"]
        lines.append(f"| count accuracy: inferred Σ_t z_pres_t (q's mode) = the scene's count, {acc['n']} test scenes | "
                     f"{_fmt(acc['accuracy'], 3)} ± {_fmt(acc['se'], 3)} |")
    if "reason" in lat:
        lines.append(f"| active units, KL(q(z \\| x) ‖ p(z)) | not available: {lat['reason']} |")
    else:
        lines.append(f"| active units, Cov_x(E_q[z_u \\| x]) > 0.01 | {lat['active_units']} of {lat['latent_dim']} |")
        lines.append(f"| mean KL(q(z \\| x) ‖ p(z)) | {_fmt(lat['kl_mean'])} |")
    lines += ["", "## Figures", ""]
    if lat.get("latent_site", "z") != "z" or lat.get("observed_site", "x") != "x":
        lines += [f"In the numbers above and the figures below, z is the pair's latent site "
                  f"`{lat['latent_site']}` and x its observed site `{lat['observed_site']}`.", ""]
    for fig in plots.FIGURES:
        if fig.name in drawn:
            rel = os.path.relpath(drawn[fig.name], run.dir)
            lines += [f"### {fig.title}", "", fig.caption, "",
                      _link(run.dir, rel, fig.name), ""]
        elif fig.name in skipped:
            lines += [f"### {fig.title}", "", f"Not drawn: {skipped[fig.name]}", ""]
    lines += _extra_sections(run.dir)
    lines += ["## Configuration", "", "| option | value |", "|---|---|"]
    lines += [f"| {key} | `{json.dumps(value)}` |" for key, value in c.items()]
    return "\n".join(lines) + "\n"


def _extra_sections(run_dir: str) -> list[str]:
    """Sample-quality, outlier and imputation results that ``ppl-vae samples`` / ``outliers`` / ``impute`` left."""
    lines = []
    found = _read_json(os.path.join(run_dir, "samples.json"))
    if found:
        lines += ["## Sample quality", "",
                  "Samples x ~ p(x) from the model against the test images: the held-out accuracy of a classifier "
                  "telling them apart (C2ST; 0.5 = indistinguishable) and the pixel-space MMD².", "",
                  "| samples | C2ST accuracy | MMD² |", "|---|---|---|",
                  f"| {found['n']} | {_fmt(found['c2st_accuracy'], 3)} ± {_fmt(found['c2st_se'], 3)} "
                  f"| {_fmt(found['mmd2'], 4)} |", ""]
        link = _link(run_dir, found.get("figure"), "samples")
        lines += [link + "\n"] if link else []
    found = [r for r in (_read_json(p) for p in sorted(glob.glob(os.path.join(run_dir, "outliers-*.json")))) if r]
    if found:
        lines += ["## Outlier detection", "",
                  "AUROC for telling test images from out-of-distribution images (1 = perfect, 0.5 = chance; "
                  "below 0.5 the score ranks outliers as *more* typical).", "",
                  "| outliers | images | AUROC of KL(q(z \\| x) ‖ p(z)) | AUROC of −log p̂(x) | K |", "|---|---|---|---|---|"]
        lines += [f"| {r['ood']} | {r['n_in']} + {r['n_out']} | {_fmt(r['auroc_kl'], 3)} | {_fmt(r['auroc_nll'], 3)} "
                  f"| {r['particles']} |" for r in found]
        lines += [""] + [link + "\n" for r in found if (link := _link(run_dir, r.get("figure"), f"outliers {r['ood']}"))]
    found = [r for r in (_read_json(p) for p in sorted(glob.glob(os.path.join(run_dir, "impute-*.json")))) if r]
    if found:
        lines += ["## Imputation", "",
                  "Squared error per missing pixel (Brier score for binary pixels) of E[x_m | x_o] by importance "
                  "resampling, of pseudo-Gibbs alone, and of the training set's mean image.", "",
                  "| mask | images | importance resampling | pseudo-Gibbs | mean image | median ESS (of K) |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['mask']} | {r['n']} | {_fmt(r['mse_importance'], 4)} | {_fmt(r['mse_pseudo_gibbs'], 4)} "
                  f"| {_fmt(r['mse_train_mean'], 4)} | {_fmt(r['ess_median'], 0)} of {r['particles']} |" for r in found]
        lines += [""] + [link + "\n" for r in found if (link := _link(run_dir, r.get("figure"), f"imputation {r['mask']}"))]
    return lines


def write(run, fig_dir: str | None = None) -> str:
    """Draw the figures, then write ``report.md`` and ``report.json`` into the run directory."""
    try:
        stats = latents.summary(run.model, run.guide, run.data.x_test, inputs=run.inputs("test"))
    except UsageError as e:  # e.g. a point-mass guide has no finite KL; the rest of the report still holds
        stats = {"reason": str(e)}
    drawn, skipped = plots.draw_all(run, fig_dir or os.path.join(run.dir, "figures"),
                                    stats=None if "reason" in stats else stats)
    nums = numbers(run, stats)
    write_json(os.path.join(run.dir, "report.json"), {**nums, "figures": {k: os.path.relpath(v, run.dir)
                                                                          for k, v in drawn.items()},
                                                      "skipped": skipped})
    path = os.path.join(run.dir, NAME)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(markdown(run, nums, drawn, skipped))
    os.replace(tmp, path)
    return path
