"""Rainforth et al. 2018 ("Tighter variational bounds are not necessarily better"): gradient SNR against K.

For a trained VAE (the IWAE paper's network, ``--preset iwae``), at fixed θ and φ and on one fixed
mini-batch, M gradient estimates of −Σ_n L_K per K give, per scalar parameter, SNR = |E g| / std g
(:mod:`ppl_vae.inference.diagnostics`); the table and figure show its median over the model's
parameters θ and over the guide's φ: for IWAE both, for DReG (Tucker et al. 2019) and STL (Roeder et
al. 2017) the guide's (their model gradient is IWAE's). Theory for IWAE: SNR_θ = O(√K) and
SNR_φ = O(1/√K), so the log-log slopes are +½ and −½; DReG's φ slope is +½. Slopes are least-squares
fits of log SNR on log K over K ≥ ``--fit-from`` (10), where the asymptotics hold.

``--scale`` shortens the model's training (``round(100 · scale)`` epochs of IWAE with K = 5; at least 1).
Resumable: the training is checkpointed (SIGINT/SIGTERM stop it; the same command continues) and every
(objective, K) cell is kept in ``--workdir``/snr.json as soon as it is measured.

    python scripts/reproduce/rainforth2018.py --data-dir ../shared/data --scale 0.05
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys

OBJECTIVES = {"iwae": ("model", "guide"), "dreg": ("guide",), "stl": ("guide",)}
KS = (1, 3, 10, 30, 100, 300, 1000)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the 100 training epochs")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--ks", default=",".join(map(str, KS)), help="comma-separated K")
    p.add_argument("--samples", type=int, default=100, help="gradient estimates M per cell")
    p.add_argument("--batch", type=int, default=20, help="training points in the fixed mini-batch")
    p.add_argument("--fit-from", type=int, default=10, help="smallest K in the slope fits")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default="runs/reproduce/rainforth2018")
    p.add_argument("--out", default="benchmarks/reproduce/rainforth2018")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    args = p.parse_args()
    ks = [int(k) for k in args.ks.split(",") if k]
    from ppl_vae.cli import main as cli
    from ppl_vae.io import checkpoint

    run, epochs = os.path.join(args.workdir, "run"), max(1, round(100 * args.scale))
    path = os.path.join(run, checkpoint.NAME)
    if not (os.path.exists(path) and checkpoint.load(path)["epoch"] >= epochs):
        where = ["--resume", run] if os.path.exists(path) else [
            "--out", run, "--dataset", args.dataset, "--data-dir", args.data_dir, "--preset", "iwae",
            "--objective", "iwae", "--particles", "5", "--batch-size", "20", "--seed", str(args.seed),
            "--checkpoint-every", "500"]
        code = cli(["train", *where, "--epochs", str(epochs), *([] if args.progress else ["--no-progress"])])
        if code:
            print(f"rainforth2018: training exited with {code}; run the same command again to continue.",
                  file=sys.stderr)
            return code
    cells = measure(args, run, ks)
    write(args, cells, ks, epochs)
    return 0


def measure(args, run: str, ks: list[int]) -> dict:
    """{"objective K": {"model": SNR, "guide": SNR}}, each cell measured once and kept in snr.json."""
    import pyro
    import torch
    from tqdm.auto import tqdm

    from ppl_vae import run as runs
    from ppl_vae.inference import objectives
    from ppl_vae.inference.diagnostics import gradient_stats, summarize
    from ppl_vae.pair import callables

    store = os.path.join(args.workdir, "snr.json")
    cells = json.load(open(store)) if os.path.exists(store) else {}
    loaded = runs.load(run, "cpu")
    model, guide = callables(loaded.model, loaded.guide)
    x = loaded.data.train_epoch(0)[:args.batch]
    idx = torch.arange(x.shape[0])
    todo = [(name, k) for name in OBJECTIVES for k in ks if f"{name} {k}" not in cells]
    for name, k in tqdm(todo, desc="SNR cells", disable=not args.progress or not todo):
        pyro.set_rng_seed(args.seed)
        stats = summarize(gradient_stats(objectives.make(name, particles=k), model, guide, x, idx,
                                         samples=args.samples))
        cells[f"{name} {k}"] = {group: stats[group]["snr_median"] for group in ("model", "guide")}
        with open(store + ".tmp", "w") as f:  # kept as soon as measured: an interruption loses one cell
            json.dump(cells, f, indent=2)
        os.replace(store + ".tmp", store)
    return cells


def slope(ks: list[int], values: list[float]) -> float:
    """Least-squares slope of log value on log K."""
    lx, ly = [math.log(k) for k in ks], [math.log(v) for v in values]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def write(args, cells: dict, ks: list[int], epochs: int) -> None:
    os.makedirs(args.out, exist_ok=True)
    series = [(name, group) for name, groups in OBJECTIVES.items() for group in groups]
    fit = [k for k in ks if k >= args.fit_from]
    slopes = {s: slope(fit, [cells[f"{s[0]} {k}"][s[1]] for k in fit]) if len(fit) >= 2 else math.nan for s in series}
    with open(os.path.join(args.out, "snr.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["objective", "parameters", *ks, "slope"])
        for s in series:
            w.writerow([s[0], "theta" if s[1] == "model" else "phi", *(cells[f"{s[0]} {k}"][s[1]] for k in ks),
                        slopes[s]])
    theory = {("iwae", "model"): "+0.5", ("iwae", "guide"): "-0.5", ("dreg", "guide"): "+0.5", ("stl", "guide"): "–"}
    command = "python scripts/reproduce/rainforth2018.py " + " ".join(sys.argv[1:])
    lines = [f"# Rainforth et al. 2018: gradient SNR against K, {args.dataset}", "", f"`{command}`", "",
             f"Median over parameters of |E g| / std g from {args.samples} estimates on {args.batch} training "
             f"points, after {epochs} epochs of IWAE (K = 5); slope of log SNR on log K for K ≥ {args.fit_from}.", "",
             "| objective | gradient | " + " | ".join(f"K={k}" for k in ks) + " | slope | theory |",
             "|---|---|" + "---:|" * (len(ks) + 2)]
    for s in series:
        values = " | ".join(f"{cells[f'{s[0]} {k}'][s[1]]:.3g}" for k in ks)
        lines.append(f"| {s[0].upper()} | {'θ' if s[1] == 'model' else 'φ'} | {values} | {slopes[s]:+.2f} | "
                     f"{theory[s]} |")
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    plot(cells, series, ks, slopes, os.path.join(args.out, "snr.png"))
    print("\n".join(lines[6:]))
    print(f"wrote table.md, snr.csv and snr.png to {args.out}")


def plot(cells, series, ks, slopes, path) -> None:
    from ppl_vae.viz.figures import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for s in series:
        label = f"{s[0].upper()} {'θ' if s[1] == 'model' else 'φ'} (slope {slopes[s]:+.2f})"
        ax.plot(ks, [cells[f"{s[0]} {k}"][s[1]] for k in ks], "o-", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("K")
    ax.set_ylabel("median SNR = |E g| / std g")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
