"""Burda, Grosse & Salakhutdinov 2016 ("Importance Weighted Autoencoders"), Table 1: test NLL on MNIST.

VAE (the k-sample ELBO) and IWAE (the k-sample bound L_k = E log (1/k) Σ_i p(x, z_i) / q(z_i | x)),
one and two stochastic layers, k ∈ {1, 5, 50}, with DReG (Tucker et al. 2019) at k = 5 and 50 as
extra rows, in the paper's protocol: the 784-200-200-50 tanh networks (two layers: a 100-100-50
second stage, ``--preset iwae`` / ``iwae2``), dynamic binarization, Adam β = (0.9, 0.999), ε = 1e-4,
batch 20, 3^i epochs at learning rate 1e-3 · 10^(−i/7) for i = 0…7 (3280 epochs), test NLL by
k = 5000 importance samples, and active units (Cov_x E_q[z_u | x] > 10^−2). At k = 1 IWAE is the
VAE, so one run fills both rows, as the paper's equal numbers say.

``--scale s`` shortens every stage to max(1, round(s · 3^i)) epochs (s = 1: the paper's; any s ≤ 1/2187
gives 8 epochs, one per learning rate); ``--eval-points`` evaluates the first N test points only.
Every run lives in ``--workdir`` and every step is resumable: run the same command again after an
interruption (SIGINT/SIGTERM checkpoint the run in progress and exit 130/143), and finished runs and
evaluations are kept. The table (paper's NLL beside ours, ± standard error over test points) goes
to ``--out`` as table.md, table.csv and nll.png.

    python scripts/reproduce/burda2016.py --data-dir ../shared/data --scale 0.0004 --eval-points 1000
"""

from __future__ import annotations

import csv
import json
import os
import sys

from reproduction import cli, command, machine, parser, seconds_per_epoch, train_to

PAPER = {("vae", 1, 1): 86.76, ("vae", 1, 5): 86.47, ("vae", 1, 50): 86.35,
         ("iwae", 1, 1): 86.76, ("iwae", 1, 5): 85.54, ("iwae", 1, 50): 84.78,
         ("vae", 2, 1): 85.33, ("vae", 2, 5): 85.01, ("vae", 2, 50): 84.78,
         ("iwae", 2, 1): 85.33, ("iwae", 2, 5): 83.89, ("iwae", 2, 50): 82.90}
ROWS = [(m, layers, k) for layers in (1, 2) for m, ks in (("vae", (1, 5, 50)), ("iwae", (1, 5, 50)), ("dreg", (5, 50)))
        for k in ks]
OBJECTIVE = {"vae": "elbo", "iwae": "iwae", "dreg": "dreg"}
COLUMNS = ["dataset", "method", "layers", "k", "paper_nll", "nll", "nll_se", "active_units", "epochs", "eval_points",
           "eval_particles", "seconds_per_epoch", "command", "machine"]


def stages(scale: float) -> list[int]:
    """Epochs of each of the 8 learning rates."""
    return [max(1, round(scale * 3 ** i)) for i in range(8)]


def run_name(method: str, layers: int, k: int) -> str:
    return f"{'vae' if k == 1 else method}-{layers}layer-k{k}"  # IWAE at k = 1 is the VAE's run


def train_argv(args, method: str, layers: int, k: int) -> list[str]:
    epochs = stages(args.scale)
    milestones = [sum(epochs[:i + 1]) for i in range(7)]
    return ["--dataset", args.dataset, "--data-dir", args.data_dir,
            "--preset", "iwae" if layers == 1 else "iwae2", "--objective", OBJECTIVE[method], "--particles", str(k),
            "--batch-size", "20", "--lr", "1e-3", "--lr-milestones", ",".join(map(str, milestones)),
            "--lr-gamma", repr(10 ** (-1 / 7)), "--adam-eps", "1e-4", "--checkpoint-every", "500",
            "--seed", str(args.seed)]


def measure(args, run: str) -> dict:
    """eval.json of the run (evaluated now unless it holds this evaluation), plus its active units."""
    path = os.path.join(run, "eval.json")
    done = json.load(open(path)) if os.path.exists(path) else {}
    from ppl_vae.io.rundir import read_jsonl
    epoch = read_jsonl(os.path.join(run, "metrics.jsonl"))[-1]["epoch"]
    same_points = args.eval_points is None or done.get("n") == args.eval_points
    if (done.get("epoch"), done.get("particles")) != (epoch, args.eval_particles) or not same_points \
            or "active_units" not in done:
        points = ["--points", str(args.eval_points)] if args.eval_points else []
        code = cli(["evaluate", run, "--particles", str(args.eval_particles), *points])
        if code:
            sys.exit(code)
        done = json.load(open(path))
        done["active_units"] = active_units(run, args.eval_points)
        with open(path, "w") as f:
            json.dump(done, f, indent=2)
    return done


def active_units(run: str, points: int | None, samples: int = 100) -> str:
    """Active units of each latent layer ("50" or "21+10"): units u with Cov_x(E_q[z_u | x]) > 10^-2, the
    posterior means from ``samples`` draws of the guide (Burda et al. 2016, section 5.2)."""
    import torch
    from pyro import poutine
    from pyro.poutine.util import site_is_subsample

    from ppl_vae import run as runs
    from ppl_vae.evaluation.latents import ACTIVE_THRESHOLD, activity
    from ppl_vae.pair import callables

    loaded = runs.load(run, "cpu")
    x = loaded.data.x_test[:points] if points else loaded.data.x_test
    _, guide = callables(loaded.model, loaded.guide)
    sums: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for _ in range(samples):
            for name, site in poutine.trace(guide).get_trace(x).nodes.items():
                if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site):
                    sums[name] = sums.get(name, 0) + site["value"]
    return "+".join(str(int((activity(s / samples) > ACTIVE_THRESHOLD).sum())) for s in sums.values())


def main() -> int:
    p = parser(__doc__, "burda2016", "fraction of each stage's 3^i epochs (1: the paper's)")
    p.add_argument("--rows", default=None, help="comma-separated run names to train (default: every row), e.g. "
                                                "vae-1layer-k1,iwae-1layer-k50")
    p.add_argument("--eval-particles", type=int, default=5000)
    p.add_argument("--eval-points", type=int, default=None, help="first N test points (default: all)")
    args = p.parse_args()
    names = sorted({run_name(*row) for row in ROWS})
    chosen = names if args.rows is None else [n for n in args.rows.split(",") if n]
    unknown = [n for n in chosen if n not in names]
    if unknown:
        p.error(f"unknown row {unknown[0]!r}; choose from {', '.join(names)}")
    os.makedirs(args.workdir, exist_ok=True)
    epochs = sum(stages(args.scale))
    print(f"burda2016: {len(chosen)} runs of {epochs} epochs (stages {stages(args.scale)}), NLL by K = "
          f"{args.eval_particles} on {args.eval_points or 'all'} test points", flush=True)
    results = {}
    for name in chosen:
        method, layers, k = next(row for row in ROWS if run_name(*row) == name)
        run = os.path.join(args.workdir, name)
        code = train_to(run, epochs, train_argv(args, method, layers, k), args.progress)
        if code:
            return code
        results[name] = measure(args, run)
    rows = merged(table_rows(args, results, epochs), os.path.join(args.out, "table.csv"))
    write(args.out, rows, args)
    return 0


def merged(rows: list[dict], path: str) -> list[dict]:
    """``rows`` and the rows of the table at ``path`` that they do not replace and that share their data and
    protocol (epochs and evaluation), in Table 1's order: the table grows run by run, each row naming its
    command."""
    same = ("dataset", "epochs", "eval_points", "eval_particles")
    have = {(r["method"], r["layers"], r["k"]) for r in rows}
    kept = []
    if rows and os.path.exists(path):
        for r in csv.DictReader(open(path)):
            r = {**r, "layers": int(r["layers"]), "k": int(r["k"]),
                 "paper_nll": float(r["paper_nll"]) if r["paper_nll"] else None,
                 **{c: float(r[c]) for c in ("nll", "nll_se", "seconds_per_epoch")}, **{c: int(r[c]) for c in same[1:]}}
            if (r["method"], r["layers"], r["k"]) not in have and all(r[c] == rows[0][c] for c in same):
                kept.append(r)
    order = {row: i for i, row in enumerate(ROWS)}
    return sorted(rows + kept, key=lambda r: order[r["method"], r["layers"], r["k"]])


def table_rows(args, results: dict, epochs: int) -> list[dict]:
    rows = []
    for method, layers, k in ROWS:
        name = run_name(method, layers, k)
        if name not in results:
            continue
        r = results[name]
        paper = PAPER.get((method, layers, k)) if args.dataset == "mnist" else None  # their numbers are MNIST's
        rows.append({"dataset": args.dataset, "method": method, "layers": layers, "k": k, "paper_nll": paper,
                     "nll": r["test_nll"], "nll_se": r["test_nll_se"], "active_units": r["active_units"],
                     "epochs": epochs, "eval_points": r["n"], "eval_particles": r["particles"],
                     "seconds_per_epoch": seconds_per_epoch(os.path.join(args.workdir, name)),
                     "command": command(), "machine": machine()})
    return rows


def write(out: str, rows: list[dict], args) -> None:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "table.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    commands = list(dict.fromkeys(r["command"] for r in rows))
    lines = [f"# Burda et al. 2016, Table 1: test NLL (nats), {args.dataset}", "",
             *(f"{i + 1}. `{c}` ({next(r['machine'] for r in rows if r['command'] == c)})"
               for i, c in enumerate(commands)), "",
             f"{rows[0]['epochs'] if rows else 0} epochs per run (stages {stages(args.scale)} of the paper's "
             f"3^i), NLL by K = {args.eval_particles} importance samples on {rows[0]['eval_points'] if rows else 0} "
             f"test points, ± its standard error over them; the paper's: 3280 epochs, K = 5000, all 10000.", "",
             "| method | layers | k | paper NLL | our NLL | active units (per latent site) | s/epoch | command |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        paper = "–" if r["paper_nll"] is None else f"{r['paper_nll']:.2f}"
        lines.append(f"| {r['method'].upper()} | {r['layers']} | {r['k']} | {paper} | {r['nll']:.2f} ± "
                     f"{r['nll_se']:.2f} | {r['active_units']} | {r['seconds_per_epoch']:.1f} | "
                     f"{commands.index(r['command']) + 1} |")
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    plot(rows, os.path.join(out, "nll.png"))
    print("\n".join(lines[len(commands) + 4:]))
    print(f"wrote table.md, table.csv and nll.png to {out}")


def plot(rows: list[dict], path: str) -> None:
    from ppl_vae.viz.figures import figure, save

    fig, ax = figure(7, 3.5)
    labels = [f"{r['method'].upper()} {r['layers']}L k={r['k']}" for r in rows]
    ax.errorbar(range(len(rows)), [r["nll"] for r in rows], yerr=[2 * r["nll_se"] for r in rows], fmt="o",
                label="ours (± 2 SE)")
    paper = [(i, r["paper_nll"]) for i, r in enumerate(rows) if r["paper_nll"] is not None]
    if paper:
        ax.plot(*zip(*paper), "s", mfc="none", label="Burda et al. 2016")
    ax.set_xticks(range(len(rows)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("test NLL (nats)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, path)


if __name__ == "__main__":
    sys.exit(main())
