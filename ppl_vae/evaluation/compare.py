"""Comparing inference methods: one model, guide, data set and seed, trained by each objective.

:func:`compare` trains one run per objective with :func:`ppl_vae.fit` into ``out/<objective>``
(a complete run directory: ``ppl-vae evaluate`` and ``ppl-vae train --resume`` work on it),
every run from the same initial networks, mini-batch order, binarization and optimizer
settings, and with the same K particles per data point. Each epoch it records the test
IWAE-K bound, log (1/K) Σ_k w_k — one yardstick for all objectives, since it is defined for
any guide and equals the ELBO at K = 1. After training it measures

- the test ELBO and the test NLL, −log p̂_S(x) with S importance samples (Burda et al. 2016);
- the test IWAE-K bound;
- the signal-to-noise ratio |E g| / std g of the guide's and the model's gradient estimates
  at the final parameters, on one fixed training batch (Rainforth et al. 2018);
- seconds per training epoch, the median over epochs (the test-set evaluations excluded),

and writes ``comparison.csv``, ``comparison.md`` and two figures of the test bound against
epoch and against training time, all objectives on one axis.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
import statistics
from concurrent.futures import ProcessPoolExecutor

import pyro
import torch

from ppl_vae import parallel, registry, spec
from ppl_vae.config import Config
from ppl_vae.device import resolve_device
from ppl_vae.errors import UsageError
from ppl_vae.evaluation.evaluate import evaluate, mean_and_se
from ppl_vae.inference.chunks import bound
from ppl_vae.data import batch_inputs
from ppl_vae.inference.checks import check, first_traces, global_sites, prepared
from ppl_vae.inference.diagnostics import gradient_stats, summarize
from ppl_vae.inference.objectives import OBJECTIVES
from ppl_vae.inference.trainer import as_dataset, fit
from ppl_vae.inference.weights import iwae_bound
from ppl_vae.io import checkpoint
from ppl_vae.io.rundir import METRICS, write_json
from ppl_vae.pair import callables, eval_mode, named_inputs
from ppl_vae.text import count
from ppl_vae.threads import fix as fix_threads
from ppl_vae.viz import figures

LINE_STYLES = ("-", "--", ":")
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "<", ">")
COLUMNS = ["objective", "epochs", "particles", "test_elbo", "test_elbo_se", "test_iwae", "test_iwae_se",
           "test_nll", "test_nll_se", "test_nll_mc_se", "eval_particles", "guide_snr", "model_snr", "guide_grad_variance",
           "seconds_per_epoch"]


def parse_names(text: str) -> list[str]:
    """'elbo,iwae' -> ['elbo', 'iwae'], each known, each once, in the order given."""
    names = list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown or not names:
        raise UsageError(f"--objectives takes a comma-separated list of {', '.join(OBJECTIVES)}; "
                         f"got {text!r}.")
    return names


def compare(config: Config, names: list[str], out: str, *, make_pair=None, data=None, eval_particles: int = 1000,
            snr_samples: int = 100, progress: bool = True, jobs: int = 1) -> list[dict]:
    """Train and measure each objective in ``names`` on ``config`` (a ``ppl-vae train`` config).

    ``make_pair``: a factory ``make_pair(data) -> (model, guide)`` to compare instead of the pair that
    ``config`` names, called after seeding for each objective; ``data``: a Dataset (or what
    :meth:`Dataset.from_tensors` takes) instead of the data set ``config`` names. ``jobs``: train
    that many objectives at once, each in its own process with its share of torch's CPU threads
    (each run is a function of its configuration alone, so the table is the sequential one's).
    Under torchrun each run trains data-parallel and its test points are sharded; the gradient SNRs are
    measured by every rank on the same batch, and rank 0's are reported. Returns one row per objective with the keys of :data:`COLUMNS`.
    """
    for name in names:
        if any(os.path.exists(os.path.join(out, name, f)) for f in (METRICS, checkpoint.NAME)):
            raise UsageError(f"{os.path.join(out, name)} already holds a run; choose another --out.")
    world = parallel.world()
    if jobs > 1 and world.parallel:
        raise UsageError("under torchrun every process trains each objective's run on its shard of the data, one "
                         "run after another; drop --jobs.")
    if jobs > 1 and (make_pair is not None or data is not None):
        raise UsageError("compare with jobs > 1 rebuilds data and pair in each process from the configuration; "
                         "name them there (dataset, pair=FILE.py:FACTORY), or use jobs=1.")
    device = resolve_device(config.run.device)
    # once: every run sees the same tensors
    data = registry.load_data(config, device) if data is None else as_dataset(data).to(device)
    if make_pair is not None:
        config = config.replace(**spec.recorded(make_pair, data, config.training.seed))
    elif config.pair.pair is not None:  # a new comparison of a user's pair: its file as it is now, the user's own
        spec.trust(config.pair.pair)
        config = config.replace(pair_sha256=spec.digest(config.pair.pair))
    build = (lambda _: spec.build(make_pair, data, "compare's make_pair")) if make_pair is not None else \
        (lambda run_config: assembled(run_config, data))
    if config.pair.pair is not None or make_pair is not None:  # which objectives it takes is known by running it
        refuse_any(config, names, data, build)
    configs = {name: config.replace(objective=name, test_bound="iwae") for name in names}
    configs = configs if make_pair is not None else {name: registry.resolve(c) for name, c in configs.items()}
    if jobs > 1:
        threads = max(1, torch.get_num_threads() // jobs)
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(run_in_process, configs[name].to_dict(), os.path.join(out, name), eval_particles,
                                   snr_samples, threads) for name in names]
            results = [future.result() for future in futures]
    else:
        results = [train_and_measure(configs[name], data, build, os.path.join(out, name), eval_particles, snr_samples,
                                     progress) for name in names]
    rows = [row for row, _ in results]
    histories = {name: history for name, (_, history) in zip(names, results)}
    if world.main:
        write_csv(os.path.join(out, "comparison.csv"), rows)
        with open(os.path.join(out, "comparison.md"), "w") as f:
            f.write(markdown(rows, config, eval_particles, snr_samples))
        plot(histories, config.inference.particles, out)
    world.barrier()  # the files exist for every rank once compare returns
    return rows


def train_and_measure(run_config: Config, data, build, run_dir: str, eval_particles: int, snr_samples: int,
                      progress) -> tuple[dict, list[dict]]:
    """(the comparison row, the metrics) of one objective's run into ``run_dir``."""
    pyro.set_rng_seed(run_config.training.seed)  # the same initial networks for every objective
    model, guide = build(run_config)
    objective = registry.build_objective(run_config)
    history = fit(model, guide, data, objective, device=data.device, out=run_dir, config=run_config,
                  progress=progress)
    # measured on the trained state in memory: it holds what the modules do not (a baseline's average)
    row = measure(objective, model, guide, data, run_config, eval_particles, snr_samples)
    row["seconds_per_epoch"] = statistics.median(m["seconds"] for m in history)
    if parallel.world().main:
        write_json(os.path.join(run_dir, "eval.json"), {**row, "dataset": run_config.data.dataset,
                                                   "seed": run_config.training.seed})
    return row, list(history)


def run_in_process(config: dict, run_dir: str, eval_particles: int, snr_samples: int, threads: int):
    """:func:`train_and_measure` in a worker process of its own, with ``threads`` torch threads."""
    fix_threads(threads)
    run_config = Config.from_dict(config)
    data = registry.load_data(run_config, resolve_device(run_config.run.device))
    return train_and_measure(run_config, data, lambda c: assembled(c, data), run_dir, eval_particles,
                             snr_samples, progress=False)


def assembled(run_config: Config, data):
    """(model, guide) of one objective's run on the comparison's data (:func:`ppl_vae.registry.assemble`)."""
    run = registry.assemble(run_config, data=data)
    return run.model, run.guide


def refuse_any(config: Config, names: list[str], data, build) -> None:
    """Before any run trains: one sentence if the pair refuses one of the objectives, naming those it takes."""
    with pyro.get_param_store().scope():
        pyro.set_rng_seed(config.training.seed)
        model, guide = build(config)
        table = check(model, guide, data, names, particles=config.inference.particles)
        found = global_sites(*first_traces(*callables(model, guide), data, named_inputs(model, guide, data)))
    if found:
        raise UsageError(f"compare measures every objective by its test IWAE-K bound and NLL, which need importance "
                         f"weights per data point, and site {found[0]!r} is a global latent; train each objective "
                         f"with ppl-vae train and compare their test ELBOs given q({found[0]}).")
    refused = {name: why for name, why in table.items() if why != "ok"}
    if refused:
        name, why = next(iter(refused.items()))
        ok = [n for n in names if n not in refused]
        instead = f"compare --objectives {','.join(ok)}" if ok else "another pair"
        raise UsageError(f"the pair cannot train with {name}: {why.removeprefix('refused: ')}; use {instead}.")


def measure(objective, model, guide, data, config: Config, eval_particles: int, snr_samples: int) -> dict:
    """Test bounds and NLL, and gradient SNRs on the first training batch, at the current parameters."""
    k, t = config.inference.particles, config.training
    world = parallel.world()  # under torchrun: the test points sharded, each rank on its own stream
    pyro.set_rng_seed(t.seed if world.main else parallel.rank_seed(t.seed, world.rank))
    test_inputs = named_inputs(model, guide, data, "test")
    result = evaluate(model, guide, data.x_test, particles=eval_particles, inputs=test_inputs)
    model_fn, guide_fn = callables(model, guide)
    train_inputs = named_inputs(model, guide, data)
    objective = prepared(objective, model_fn, guide_fn, data, train_inputs).objective  # as fit trained it
    rows = world.rows(data.x_test.shape[0])
    with eval_mode(model_fn, guide_fn):  # the program's plates and particles as the objective draws them
        iwae = world.gather_rows(bound(model_fn, guide_fn, data.x_test[rows], iwae_bound, k,
                                       inputs=batch_inputs(test_inputs, rows), max_plate_nesting=objective.nesting,
                                       vectorized=objective.vectorized))
    iwae, iwae_se = mean_and_se(iwae)
    x = data.train_epoch(0)[:t.batch_size]
    inputs = batch_inputs(train_inputs, slice(0, x.shape[0]))
    idx = torch.arange(x.shape[0], device=x.device)
    snr = summarize(gradient_stats(objective, model_fn, guide_fn, x, idx, samples=snr_samples, **inputs))
    return {"objective": objective.name, "epochs": t.epochs, "particles": k,
            "test_elbo": result["test_elbo"], "test_elbo_se": result["test_elbo_se"],
            "test_iwae": iwae, "test_iwae_se": iwae_se, "test_nll": result["test_nll"],
            "test_nll_se": result["test_nll_se"], "test_nll_mc_se": result["test_nll_mc_se"],
            "eval_particles": eval_particles,
            "guide_snr": snr["guide"]["snr"], "model_snr": snr["model"]["snr"],
            "guide_grad_variance": snr["guide"]["variance"]}


def write_csv(path: str, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def markdown(rows: list[dict], config: Config, eval_particles: int, snr_samples: int) -> str:
    """The comparison table in Markdown, with what was run above it."""
    k, t = config.inference.particles, config.training
    lines = [f"{config.data.dataset}, {count(t.epochs, 'epoch')}, K = {k} particles per data point, seed {t.seed}; "
             f"NLL with S = {eval_particles} importance samples; SNR = mean over parameters of |E g| / std g, "
             f"grad var = mean over parameters of Var g, from {snr_samples} gradient estimates on one training "
             f"batch of {t.batch_size}. "
             f"Nats per test example (standard errors over test points ≈ "
             f"{max(r['test_nll_se'] for r in rows):.2f}; the NLL's Monte Carlo standard error, by the delta method, "
             f"in its column).", "",
             f"| objective | test ELBO | test IWAE-{k} | test NLL | NLL MC se | guide SNR | guide grad var | model SNR | s/epoch |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['objective']} | {r['test_elbo']:.2f} | {r['test_iwae']:.2f} | {r['test_nll']:.2f} | {r['test_nll_mc_se']:.3f} "
                     f"| {r['guide_snr']:.3g} | {r['guide_grad_variance']:.3g} | {r['model_snr']:.3g} "
                     f"| {r['seconds_per_epoch']:.2f} |")
    return "\n".join(lines) + "\n"


def plot(histories: dict[str, list[dict]], particles: int, out: str) -> list[str]:
    """comparison_epochs.png and comparison_time.png: the test IWAE-K bound of every objective."""
    paths = []
    for x_key, x_label, name in (("epoch", "epoch", "comparison_epochs.png"),
                                 ("time", "training time (s)", "comparison_time.png")):
        fig, ax = figures.figure(7, 4.5)
        for i, (objective, history) in enumerate(histories.items()):
            seconds = torch.tensor([m["seconds"] for m in history]).cumsum(0).tolist()
            xs = [m["epoch"] for m in history] if x_key == "epoch" else seconds
            # curves of similar objectives lie on top of each other: style and markers tell them apart
            every = max(1, len(xs) // 8)  # markers staggered so that coinciding curves show each one
            ax.plot(xs, [m["test_bound"] for m in history], label=objective, lw=1.4, color=f"C{i % 10}",
                    ls=LINE_STYLES[i % len(LINE_STYLES)], marker=MARKERS[i % len(MARKERS)],
                    markevery=(i * every // len(histories), every), markersize=5)
        ax.set_ylim(*_focus(histories))
        ax.set_xlabel(x_label)
        ax.set_ylabel(f"test IWAE-{particles} bound (nats)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=2, loc="lower right")
        fig.tight_layout()
        paths.append(figures.save(fig, os.path.join(out, name)))
    return paths


def _focus(histories: dict[str, list[dict]]) -> tuple[float, float]:
    """y-limits that leave out the first tenth of training, where every curve starts far below."""
    tails = [m["test_bound"] for h in histories.values() for m in h[len(h) // 10:]]
    lo, hi = min(tails), max(tails)
    pad = 0.05 * (hi - lo) + 1e-3
    return lo - pad, hi + pad
