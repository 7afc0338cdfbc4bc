"""Rainforth et al. 2018 ("Tighter variational bounds are not necessarily better"): gradient SNR against K.

For a trained VAE (the IWAE paper's network, ``--preset iwae``), at fixed θ and φ and on one fixed
mini-batch, M gradient estimates of −Σ_n L_K per K give, per scalar parameter, SNR = |E g| / std g
(:mod:`ppl_vae.inference.diagnostics`); the table and figure show its median over the model's
parameters θ and over the guide's φ: for IWAE both, for DReG (Tucker et al. 2019) and STL (Roeder et
al. 2017) the guide's (their model gradient is IWAE's). Theory for IWAE: SNR_θ = O(√K) and
SNR_φ = O(1/√K), so the log-log slopes are +½ and −½; DReG's φ slope is +½. Slopes are least-squares
fits of log SNR on log K over K ≥ ``--fit-from`` (10).

The asymptotics need the importance weights to spread over many particles, so the table gives the
effective sample size ESS = (Σ_k w_k)² / Σ_k w_k² per K, and repeats every cell on a control where
they do: a small PPCA with a guide off its exact posterior (:func:`control`).

``--scale`` shortens the model's training (``round(100 · scale)`` epochs of IWAE with K = 5; at least 1).
Resumable: the training is checkpointed (SIGINT/SIGTERM stop it; the same command continues) and every
(objective, K) cell is kept in ``--workdir``/snr.json as soon as it is measured.

    python scripts/reproduce/rainforth2018.py --data-dir ../shared/data --scale 0.05
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys

from reproduction import command, machine, parser, seconds_per_epoch, train_to

OBJECTIVES = {"iwae": ("model", "guide"), "dreg": ("guide",), "stl": ("guide",)}
KS = (1, 3, 10, 30, 100, 300, 1000)


def main() -> int:
    p = parser(__doc__, "rainforth2018", "fraction of the 100 training epochs")
    p.add_argument("--ks", default=",".join(map(str, KS)), help="comma-separated K")
    p.add_argument("--samples", type=int, default=100, help="gradient estimates M per cell")
    p.add_argument("--batch", type=int, default=20, help="training points in the fixed mini-batch")
    p.add_argument("--fit-from", type=int, default=10, help="smallest K in the slope fits")
    args = p.parse_args()
    ks = [int(k) for k in args.ks.split(",") if k]
    run, epochs = os.path.join(args.workdir, "run"), max(1, round(100 * args.scale))
    code = train_to(run, epochs, ["--dataset", args.dataset, "--data-dir", args.data_dir, "--preset", "iwae",
                                  "--objective", "iwae", "--particles", "5", "--batch-size", "20",
                                  "--seed", str(args.seed), "--checkpoint-every", "500"], args.progress)
    if code:
        return code
    cells = measure(args, run, ks)
    write(args, cells, ks, epochs, seconds_per_epoch(run))
    return 0


def measure(args, run: str, ks: list[int]) -> dict:
    """{"objective K": {"model": SNR, "guide": SNR}, "ess K": ESS, and the same under "ppca ..."}, each cell
    measured once and kept in snr.json."""
    import pyro
    import torch
    from tqdm.auto import tqdm

    from ppl_vae import run as runs
    from ppl_vae.inference import objectives
    from ppl_vae.inference.diagnostics import gradient_stats, summarize
    from ppl_vae.inference.weights import log_weights
    from ppl_vae.pair import callables

    store = os.path.join(args.workdir, "snr.json")
    cells = json.load(open(store)) if os.path.exists(store) else {}
    loaded = runs.load(run, "cpu")
    model, guide = callables(loaded.model, loaded.guide)
    x = loaded.data.train_epoch(0)[:args.batch]
    problems = {"": (model, guide, (x, torch.arange(x.shape[0]))), "ppca ": control()}
    todo = [(prefix, name, k) for prefix in problems for name in (*OBJECTIVES, "ess") for k in ks
            if f"{prefix}{name} {k}" not in cells]
    for prefix, name, k in tqdm(todo, desc="SNR cells", disable=not args.progress or not todo):
        model, guide, inputs = problems[prefix]
        pyro.set_rng_seed(args.seed)
        if name == "ess":
            with torch.no_grad():
                cells[f"{prefix}ess {k}"] = ess(log_weights(model, guide, *inputs, particles=k))
        else:
            stats = summarize(gradient_stats(objectives.make(name, particles=k), model, guide, *inputs,
                                             samples=args.samples))
            cells[f"{prefix}{name} {k}"] = {group: stats[group]["snr_median"] for group in ("model", "guide")}
        with open(store + ".tmp", "w") as f:  # kept as soon as measured: an interruption loses one cell
            json.dump(cells, f, indent=2)
        os.replace(store + ".tmp", store)
    return cells


def ess(log_w) -> float:
    """Mean over the points of the effective sample size (Σ_k w_k)² / Σ_k w_k² of K importance weights."""
    return float((2 * log_w.logsumexp(0) - (2 * log_w).logsumexp(0)).exp().mean())


def control():
    """The control problem, where the asymptotics hold at small K: 4 points of a PPCA with x ∈ R⁵, z ∈ R²
    (float64), and a diagonal Gaussian guide off its exact posterior N(A x + b, Σ) by 0.4 in the mean
    and a factor 1.3 in each standard deviation."""
    import torch

    from ppl_vae.guides.linear import LinearGaussian
    from ppl_vae.models.ppca import PPCA

    g = torch.Generator().manual_seed(0)
    ppca = PPCA(5, 2, W=torch.randn(5, 2, generator=g, dtype=torch.float64),
                mu=torch.randn(5, generator=g, dtype=torch.float64), sigma=0.7).double()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        x = ppca.marginal().sample((4,))
    A, b, cov = ppca.posterior_params()
    guide = LinearGaussian(5, 2, full_cov=False).double()
    with torch.no_grad():
        guide.A.copy_(A)
        guide.b.copy_(b + 0.4)
        guide.log_diag.copy_(cov.diagonal().sqrt().log() + math.log(1.3))
    return ppca.model, guide.guide, (x,)


def slope(ks: list[int], values: list[float]) -> float:
    """Least-squares slope of log value on log K."""
    lx, ly = [math.log(k) for k in ks], [math.log(v) for v in values]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def write(args, cells: dict, ks: list[int], epochs: int, seconds: float) -> None:
    os.makedirs(args.out, exist_ok=True)
    series = [(name, group) for name, groups in OBJECTIVES.items() for group in groups]
    fit = [k for k in ks if k >= args.fit_from]
    problems = {"": f"{args.dataset} VAE after {epochs} epochs of IWAE (K = 5), {args.batch} training points",
                "ppca ": "control: PPCA, x ∈ R⁵, z ∈ R², 4 points, diagonal Gaussian guide off the exact posterior"}
    value = lambda prefix, s, k: cells[f"{prefix}{s[0]} {k}"][s[1]]  # noqa: E731
    slopes = {(prefix, s): slope(fit, [value(prefix, s, k) for k in fit]) if len(fit) >= 2 else math.nan
              for prefix in problems for s in series}
    with open(os.path.join(args.out, "snr.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["problem", "objective", "parameters", *ks, "slope"])
        for prefix in problems:
            name = prefix.strip() or args.dataset
            for s in series:
                w.writerow([name, s[0], "theta" if s[1] == "model" else "phi",
                            *(value(prefix, s, k) for k in ks), slopes[prefix, s]])
            w.writerow([name, "iwae", "ess", *(cells[f"{prefix}ess {k}"] for k in ks), ""])
    theory = {("iwae", "model"): "+0.5", ("iwae", "guide"): "-0.5", ("dreg", "guide"): "+0.5", ("stl", "guide"): "–"}
    lines = [f"# Rainforth et al. 2018: gradient SNR against K, {args.dataset}", "", f"`{command()}` ({machine()})", "",
             f"Median over parameters of |E g| / std g from {args.samples} estimates on a fixed batch; slope of "
             f"log SNR on log K for K ≥ {args.fit_from}. ESS: the mean over the points of (Σ_k w_k)² / Σ_k w_k², "
             f"the number of particles that carry the IWAE estimate; the asymptotic slopes need ESS to grow with K. "
             f"Training: {seconds:.1f} s/epoch on this machine (the full 100 epochs: × 100)."]
    for prefix, title in problems.items():
        lines += ["", f"**{title}**", "",
                  "| objective | gradient | " + " | ".join(f"K={k}" for k in ks) + " | slope | theory |",
                  "|---|---|" + "---:|" * (len(ks) + 2)]
        for s in series:
            values = " | ".join(f"{value(prefix, s, k):.3g}" for k in ks)
            lines.append(f"| {s[0].upper()} | {'θ' if s[1] == 'model' else 'φ'} | {values} | "
                         f"{slopes[prefix, s]:+.2f} | {theory[s]} |")
        lines.append("| ESS | | " + " | ".join(f"{cells[f'{prefix}ess {k}']:.3g}" for k in ks) + " | | |")
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    plot(cells, problems, series, ks, slopes, os.path.join(args.out, "snr.png"))
    print("\n".join(lines[5:]))
    print(f"wrote table.md, snr.csv and snr.png to {args.out}")


def plot(cells, problems, series, ks, slopes, path) -> None:
    from ppl_vae.viz.figures import figure, save

    fig, axes = figure(5.5 * len(problems), 4, ncols=len(problems), squeeze=False)
    for ax, (prefix, title) in zip(axes[0], problems.items()):
        for s in series:
            label = f"{s[0].upper()} {'θ' if s[1] == 'model' else 'φ'} (slope {slopes[prefix, s]:+.2f})"
            ax.plot(ks, [cells[f"{prefix}{s[0]} {k}"][s[1]] for k in ks], "o-", label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("K")
        ax.set_ylabel("median SNR = |E g| / std g")
        ax.set_title(title.split(",")[0], fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, path)


if __name__ == "__main__":
    sys.exit(main())
