"""Cremer, Li & Duvenaud 2018 ("Inference suboptimality in variational autoencoders"): inference gaps.

Two VAEs on MNIST trained alike, one with the fully factorized Gaussian encoder (FFG, ``--guide
gaussian``) and one with a flow encoder (``--guide iaf``), then for each ``ppl-vae gaps`` on the first
``--gap-points`` test points: log p̂(x) (K importance samples), L[q*] (the ELBO of q refined per point
within the encoder's family, θ fixed), L[q] (the amortized ELBO), the approximation gap
log p̂(x) − L[q*] and the amortization gap L[q*] − L[q], in the layout of their Table 2 (one column
per trained encoder). Their table also gives L[q*] in the other family for each model; ``ppl-vae gaps``
refines within the run's own family, so that row is not here.

``--scale`` shortens training to max(1, round(100 · scale)) epochs (their 3280-epoch schedule is
Burda et al.'s; the full protocol here is 100 epochs of the ELBO at batch 100, lr 1e-3). Resumable:
training is checkpointed (SIGINT/SIGTERM stop it; the same command continues) and a finished run's
gaps.json is kept.

    python scripts/reproduce/cremer2018.py --data-dir ../shared/data --scale 0.05 --gap-points 20
"""

from __future__ import annotations

import json
import os
import sys

from reproduction import cli, command, machine, parser, seconds_per_epoch, train_to

ENCODERS = {"FFG": "gaussian", "Flow": "iaf"}
ROWS = [("log p̂(x)", "log_px"), ("L[q*]", "elbo_q_star"), ("L[q]", "elbo_q"),
        ("approximation gap", "approximation_gap"), ("amortization gap", "amortization_gap")]


def main() -> int:
    p = parser(__doc__, "cremer2018", "fraction of the 100 training epochs")
    p.add_argument("--gap-points", type=int, default=100, help="test points refined per run")
    p.add_argument("--gap-steps", type=int, default=3000, help="refinement steps at most per point")
    p.add_argument("--particles", type=int, default=5000, help="K for log p̂(x) and the ELBOs")
    args = p.parse_args()
    epochs, results = max(1, round(100 * args.scale)), {}
    for column, guide in ENCODERS.items():
        run = os.path.join(args.workdir, guide)
        code = train_to(run, epochs, ["--dataset", args.dataset, "--data-dir", args.data_dir, "--preset", "iwae",
                                      "--guide", guide, "--seed", str(args.seed), "--checkpoint-every", "500"],
                        args.progress)
        if code:
            return code
        gaps = os.path.join(run, "gaps.json")
        done = json.load(open(gaps)) if os.path.exists(gaps) else {}
        if (done.get("epoch"), done.get("n")) != (epochs, args.gap_points):
            code = cli(["gaps", run, "--points", str(args.gap_points), "--particles", str(args.particles),
                        "--max-steps", str(args.gap_steps), "--seed", str(args.seed)])
            if code:
                return code
            done = json.load(open(gaps))
        results[column] = {**done, "seconds_per_epoch": seconds_per_epoch(run)}
    write(args, results, epochs)
    return 0


def write(args, results: dict, epochs: int) -> None:
    os.makedirs(args.out, exist_ok=True)
    n = next(iter(results.values()))["n"]
    lines = [f"# Cremer et al. 2018, Table 2 layout: inference gaps (nats), {args.dataset}", "", f"`{command()}` ({machine()})", "",
             f"Each column a VAE ({'-'.join(['784', '200', '200', '50'])} tanh) trained {epochs} epochs with that "
             f"encoder; log p̂(x) with K = {args.particles}, q* refined per point (at most {args.gap_steps} steps), "
             f"the mean over the first {n} test points ± its standard error. Training cost on this machine: "
             + ", ".join(f"{c} {r['seconds_per_epoch']:.1f} s/epoch" for c, r in results.items())
             + " (the full 100 epochs: × 100).", "",
             "| | " + " | ".join(f"q_{c}" for c in results) + " |", "|---|" + "---:|" * len(results)]
    for label, key in ROWS:
        cells = []
        for r in results.values():
            se = r.get(f"{key}_se")
            cells.append(f"{r[key]:.2f}" + (f" ± {se:.2f}" if se is not None else ""))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(args.out, "gaps.json"), "w") as f:
        json.dump({c: {k: r.get(k) for _, key in ROWS for k in (key, f"{key}_se")} for c, r in results.items()},
                  f, indent=2)
    print("\n".join(lines[6:]))
    print(f"wrote table.md and gaps.json to {args.out}")


if __name__ == "__main__":
    sys.exit(main())
