"""Classical baselines and the VAE on one table, each fit by the same code as ``ppl-vae train``.

Every row is a run configuration (the settings below plus the shared data settings), trained
by :func:`ppl_vae.run.train` as ``ppl-vae train`` would, into ``OUT/runs/<row>`` and then scored on the test set:

- exactly, log p(x) = ``model.log_marginal(x)``, for models that have it (PPCA, GMM);
- by importance sampling with K particles from the guide (``ppl_vae.evaluation.evaluate``) otherwise (VAE).

Two tables, because densities of different data cannot be compared:

- continuous: PPCA, GMM and the Gaussian-likelihood VAE on the same grey levels with uniform
  dequantization, x̃ = (k + u) / L ∈ [0, 1)^D, u ~ U[0, 1)^D, k ∈ {0, …, L − 1} the grey level
  (L = 17 for digits, 256 for MNIST); the test set is one seeded draw of u, the same for every
  row. Reported: log p(x̃), a density on [0, 1)^D in nats per example, and bits per dimension
  of the discrete grey levels, bpd = −(log p(x̃) − D log L) / (D log 2): −D log L is the
  change of variables from [0, 1)^D to the integer grid, so log p(x̃) − D log L is, in
  expectation over u, a lower bound on log P(k) (Theis et al. 2016), and bpd an upper bound on
  the discrete model's bits per dimension (log₂ L for the uniform distribution).
- binarized: the Bernoulli VAE on dynamically binarized pixels, x ∈ {0, 1}^D, where the log
  likelihood is a log probability and bpd = −log p(x) / (D log 2).

Fit time is the sum of the ``seconds`` column of the run's metrics (training only, without the
per-epoch test evaluation), so SVI and EM are timed alike.
"""

from __future__ import annotations

import csv
import math
import os
import time
from dataclasses import dataclass

import pyro
import torch

from ppl_vae.errors import UsageError
from ppl_vae.data import GREY_LEVELS
from ppl_vae.device import resolve_device
from ppl_vae.evaluation.evaluate import evaluate, mean_and_se
from ppl_vae import run as runs
from ppl_vae.config import Config
from ppl_vae.io.rundir import METRICS, read_jsonl


@dataclass(frozen=True)
class Row:
    name: str      # run folder under OUT/runs
    model: str
    method: str
    settings: dict  # run-configuration settings beyond the shared ones


CONTINUOUS = (
    Row("gaussian", "Gaussian, full covariance (GMM, K = 1)", "EM", {"model": "gmm", "method": "em", "components": 1}),
    Row("ppca-closed-form", "PPCA (PCA + isotropic noise)", "closed form", {"model": "ppca", "method": "closed-form"}),
    Row("ppca-em", "PPCA", "EM", {"model": "ppca", "method": "em"}),
    Row("ppca-svi-linear", "PPCA", "SVI, linear guide", {"model": "ppca", "method": "svi", "guide": "linear", "lr": 1e-2}),
    Row("ppca-svi-mlp", "PPCA", "SVI, MLP guide", {"model": "ppca", "method": "svi", "guide": "gaussian", "lr": 1e-2}),
    Row("gmm-diag-em", "GMM, diagonal", "EM", {"model": "gmm", "method": "em", "covariance": "diag"}),
    Row("gmm-full-em", "GMM, full", "EM", {"model": "gmm", "method": "em", "covariance": "full"}),
    Row("gmm-full-svi", "GMM, full", "SVI, enumerated", {"model": "gmm", "method": "svi", "covariance": "full"}),
    Row("vae-gaussian", "VAE, Gaussian likelihood", "SVI, MLP guide", {"model": "vae", "likelihood": "gaussian"}),
)
BINARIZED = (
    Row("vae-bernoulli", "VAE, Bernoulli likelihood", "SVI, MLP guide", {"model": "vae", "binarize": "dynamic"}),
)
TABLES = {"continuous": CONTINUOUS, "binarized": BINARIZED}
COLUMNS = ("table", "model", "method", "test_log_likelihood", "test_log_likelihood_se", "bits_per_dim",
           "train_log_likelihood", "estimate", "fit_seconds", "epochs", "run_dir", "command")


def bits_per_dim(log_likelihood: float, x_dim: int, levels: int | None) -> float:
    """−(log p − D log L) / (D log 2) for a density of dequantized data, −log p / (D log 2) for binary data."""
    discrete = log_likelihood - (x_dim * math.log(levels) if levels else 0.0)
    return -discrete / (x_dim * math.log(2))


def score(run, particles: int) -> dict:
    """Mean test log-likelihood, its standard error and how it was computed, of a loaded run; for
    models with an exact log p(x) also the training log-likelihood (on the draw EM fits), to show overfitting."""
    x = run.data.x_test
    if hasattr(run.model, "log_marginal"):
        with torch.no_grad():
            mean, se = mean_and_se(run.model.log_marginal(x))
            train = run.model.log_marginal(run.data.train_epoch(0)).mean().item()
        return {"test_log_likelihood": mean, "test_log_likelihood_se": se, "train_log_likelihood": train,
                "estimate": "exact"}
    result = evaluate(run.model, run.guide, x, particles=particles)
    return {"test_log_likelihood": -result["test_nll"], "test_log_likelihood_se": result["test_nll_se"],
            "train_log_likelihood": None, "estimate": f"importance-sampled, K = {particles}"}


def shared_settings(table: str, dataset: str, data_dir: str, latent_dim: int, components: int, epochs: int,
                    seed: int, device: str) -> dict:
    data = {"binarize": "none", "dequantize": True} if table == "continuous" else {}
    return {"dataset": dataset, "data_dir": data_dir, **data, "latent_dim": latent_dim, "components": components,
            "epochs": epochs, "seed": seed, "device": device}


def command_line(settings: dict) -> str:
    """The ``ppl-vae train`` flags that give ``settings``."""
    flags = []
    for key, value in settings.items():
        flag = "--" + key.replace("_", "-")
        flags += [flag] if value is True else [flag, ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    return " ".join(flags)


def run(dataset: str = "digits", out: str = "baselines", *, data_dir: str = "data", latent_dim: int = 8,
        components: int = 10, epochs: int = 100, particles: int = 1000, seed: int = 0, device: str = "auto",
        progress: bool = True) -> list[dict]:
    """Train and score every row of both tables; writes OUT/baselines.csv and OUT/baselines.md, returns the rows."""
    runs_dir = os.path.join(out, "runs")
    if os.path.isdir(runs_dir) and os.listdir(runs_dir):
        raise UsageError(f"{out} already holds baseline runs; choose another --out or delete {runs_dir}.")
    results = []
    for table, rows in TABLES.items():
        for row in rows:
            run_dir = os.path.join(runs_dir, row.name)
            settings = {**shared_settings(table, dataset, data_dir, latent_dim, components, epochs, seed, device),
                        **row.settings}
            runs.train(Config.from_dict(settings), run_dir, progress=progress)
            loaded = runs.load(run_dir, device)
            pyro.set_rng_seed(seed)
            scores = score(loaded, particles)
            metrics = read_jsonl(os.path.join(run_dir, METRICS))
            results.append({
                "table": table, "model": row.model, "method": row.method, **scores,
                "bits_per_dim": bits_per_dim(scores["test_log_likelihood"], loaded.data.x_dim, loaded.data.levels),
                "fit_seconds": sum(m["seconds"] for m in metrics), "epochs": metrics[-1]["epoch"],
                "run_dir": run_dir, "command": f"ppl-vae train --out {run_dir} {command_line(settings)}"})
    command = (f"ppl-vae baselines --dataset {dataset} --data-dir {data_dir} --out {out} --latent-dim {latent_dim} "
               f"--components {components} --epochs {epochs} --particles {particles} --seed {seed} --device {device}")
    write(results, out, dataset, command, machine(resolve_device(device)))
    return results


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def write(results: list[dict], out: str, dataset: str, command: str, where: str) -> None:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "baselines.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(results)
    with open(os.path.join(out, "baselines.md"), "w") as f:
        f.write(markdown(results, dataset, command, where))


CAPTIONS = {
    "continuous": "Grey levels k ∈ {{0, …, L − 1}} (L = {levels}) with uniform dequantization, x̃ = (k + u)/L on "
                  "[0, 1)^D, one seeded test draw of u for every row: log p(x̃) is a density (nats per example, "
                  "higher is better); bits/dim = −(log p(x̃) − D log L)/(D log 2) bounds the discrete grey levels' "
                  "bits per dimension (lower is better; log₂ L for the uniform distribution).",
    "binarized": "Dynamically binarized pixels, x ∈ {{0, 1}}^D: log p(x) is a log probability (nats per example); "
                 "bits/dim = −log p(x)/(D log 2). Not comparable with the table above.",
}


def markdown(results: list[dict], dataset: str, command: str, where: str) -> str:
    """Both tables as Markdown, with their data convention above each and the command that made them."""
    lines = [f"# Baselines on {dataset}", "", f"`{command}` ({time.strftime('%Y-%m-%d')}, {where})", ""]
    for table in TABLES:
        rows = [r for r in results if r["table"] == table]
        if not rows:
            continue
        lines += [f"## {table}", "", CAPTIONS[table].format(levels=GREY_LEVELS[dataset]), "",
                  "| model | method | test log-likelihood (nats) | bits/dim | estimate | train log-likelihood | "
                  "fit (s) | epochs |",
                  "|---|---|---:|---:|---|---:|---:|---:|"]
        lines += [f"| {r['model']} | {r['method']} | {r['test_log_likelihood']:.2f} ± {r['test_log_likelihood_se']:.2f}"
                  f" | {r['bits_per_dim']:.3f} | {r['estimate']} | {_number(r['train_log_likelihood'])}"
                  f" | {r['fit_seconds']:.1f} | {r['epochs']} |" for r in rows]
        lines.append("")
    return "\n".join(lines)


def _number(value) -> str:
    return "–" if value is None else f"{value:.2f}"
