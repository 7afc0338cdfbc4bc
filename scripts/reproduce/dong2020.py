"""Dong, Mnih & Tucker 2020 (DisARM), at a reduced scale: gradient estimators for a sigmoid belief network.

The paper trains the one-stochastic-layer linear SBN (200 binary latents, ``--preset sbn``) on dynamically
binarized MNIST by the ELBO with each estimator and reports the training ELBO, the 100-sample bound on the
test set and the variance of the guide's gradient during training (its Table 1 and Figure 5): DisARM's
variance lies below ARM's throughout, and its bounds are at least as good as ARM's and the two-sample
REINFORCE with a leave-one-out baseline's. This script trains the same model with ``--estimators`` (default:
disarm, arm, relax, vimco with K = 2, the score function with a neural baseline, and concrete, the relaxation;
relax learns one control variate for one site of bits, so the two-layer ``--preset sbn2`` leaves it out),
Adam at ``--lr``, mini-batches of 50, for ``round(--epochs × --scale)`` epochs; at ``--checkpoints``
evenly spaced points of training it measures the guide's gradient variance on one fixed training batch
(the mean over φ's scalar parameters of the variance of ``--samples`` estimates,
:func:`ppl_vae.inference.diagnostics.gradient_stats`), and at the end the test ELBO and the 100-sample
bound log p̂₁₀₀(x) (:func:`ppl_vae.evaluate`).

What differs from the paper, and is stated in the table: far fewer steps (the paper: 10⁶), one seed (the
paper: 5), vimco (the leave-one-out score function of the IWAE-2 bound) in place of REINFORCE LOO of the
ELBO, and relax with its free-form control variate (a running level plus an MLP of the relaxed sample and the
image; no REBAR term) and one draw per point. Each estimator's training value is what it trains (``train`` column: the ELBO for
disarm, arm, score-nn; IWAE-2 for vimco; the relaxed ELBO for concrete); the test columns are one
yardstick for all. Resumable: each run is checkpointed and every measurement is kept in
``--workdir``/variance.json as soon as it is made.

    python scripts/reproduce/dong2020.py --data-dir ../shared/data --scale 0.2
"""

from __future__ import annotations

import json
import os
import sys

from reproduction import keep, parser, seconds_per_epoch, train_to, write_table

ESTIMATORS = ("disarm", "arm", "relax", "vimco", "score-nn", "concrete")
ONE_SITE = ("relax",)  # estimators that take the bits in one site: not the two-layer network's
PARTICLES = {"vimco": 2, "disarm": 2, "arm": 2}  # two draws per point: the antithetic pair; vimco's leave-one-out
PAPER = ("DisARM's guide-gradient variance below ARM's throughout training, and DisARM's training ELBO and "
         "100-sample test bound at least as good as ARM's and REINFORCE LOO's (linear, two-layer and non-linear "
         "SBNs, dynamic MNIST; Table 1 and Figure 5 of arXiv:2006.10680)")
MODELS = {"sbn": "Linear sigmoid belief network, 200 binary latents",
          "sbn2": "Linear sigmoid belief network of two stochastic layers of 200 binary latents each (disarm and arm "
                  "estimate the guide q(b₁ | x) q(b₂ | b₁) layer by layer)",
          "sbn-nonlinear": "Non-linear sigmoid belief network, 200 binary latents through two tanh layers of 200"}


def main() -> int:
    p = parser(__doc__, "dong2020", "fraction of --epochs")
    p.add_argument("--epochs", type=int, default=50, help="epochs at --scale 1 (the paper: 10⁶ steps ≈ 830 epochs)")
    p.add_argument("--estimators", help="comma-separated objectives (default: all that the --preset takes)")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--checkpoints", type=int, default=5, help="gradient-variance measurements per run")
    p.add_argument("--samples", type=int, default=100, help="gradient estimates per measurement")
    p.add_argument("--eval-particles", type=int, default=100)
    p.add_argument("--preset", choices=list(MODELS), default="sbn",
                   help="the paper's model; another than sbn gets its own default --workdir and --out")
    args = p.parse_args()
    if args.preset != "sbn":
        for key in ("workdir", "out"):
            if getattr(args, key) == p.get_default(key):
                setattr(args, key, f"{p.get_default(key)}-{args.preset}")
    epochs = max(1, round(args.epochs * args.scale))
    takes = [n for n in ESTIMATORS if not (args.preset == "sbn2" and n in ONE_SITE)]
    names = [n for n in args.estimators.split(",") if n] if args.estimators else takes
    store = os.path.join(args.workdir, "variance.json")
    cells = json.load(open(store)) if os.path.exists(store) else {}
    marks = sorted({max(1, round(epochs * (i + 1) / args.checkpoints)) for i in range(args.checkpoints)})
    for name in names:
        run = os.path.join(args.workdir, name)
        fresh = ["--dataset", args.dataset, "--data-dir", args.data_dir, "--preset", args.preset, "--objective", name,
                 "--particles", str(PARTICLES.get(name, 1)), "--batch-size", "50", "--lr", str(args.lr),
                 "--seed", str(args.seed)]
        for mark in marks:
            key = f"{name} {mark}"
            if key in cells:
                continue
            code = train_to(run, mark, fresh, args.progress)
            if code:
                return code
            cells[key] = measure(run, args)
            if mark == epochs:
                cells[f"{name} end"] = evaluate(run, args)
            keep(store, cells)
    write(args, cells, names, marks, epochs)
    return 0


def measure(run: str, args) -> dict:
    """The guide's and the model's gradient variance and SNR at the run's last checkpoint, on the first 50
    points of epoch 0's binarization, and the step it was taken at."""
    import pyro
    import torch

    from ppl_vae import run as runs
    from ppl_vae.inference import objectives
    from ppl_vae.inference.diagnostics import gradient_stats, summarize
    from ppl_vae.io.rundir import read_jsonl
    from ppl_vae.pair import callables

    loaded = runs.load(run, "cpu")
    model, guide = callables(loaded.model, loaded.guide)
    c = loaded.config.inference
    objective = objectives.make(c.objective, particles=c.particles)
    x = loaded.data.train_epoch(0)[:50]
    pyro.set_rng_seed(args.seed)
    stats = summarize(gradient_stats(objective, model, guide, x, torch.arange(x.shape[0]), samples=args.samples))
    last = read_jsonl(os.path.join(run, "metrics.jsonl"))[-1]
    return {"step": last["step"], "epoch": last["epoch"], "train": last["train_bound"],
            "guide_variance": stats["guide"]["variance"], "guide_snr": stats["guide"]["snr"],
            "model_variance": stats["model"]["variance"]}


def evaluate(run: str, args) -> dict:
    """Test ELBO and the 100-sample bound at the end of training."""
    import pyro

    from ppl_vae import evaluate as evaluate_pair
    from ppl_vae import run as runs

    loaded = runs.load(run, "cpu")
    pyro.set_rng_seed(args.seed)
    found = evaluate_pair(loaded.model, loaded.guide, loaded.data.x_test, particles=args.eval_particles)
    return {"test_elbo": found["test_elbo"], "test_elbo_se": found["test_elbo_se"],
            "test_bound": -found["test_nll"], "test_bound_se": found["test_nll_se"],
            "seconds_per_epoch": seconds_per_epoch(run)}


TRAINS = {"vimco": "IWAE-2", "concrete": "relaxed ELBO"}


def write(args, cells: dict, names: list[str], marks: list[int], epochs: int) -> None:
    k = args.eval_particles
    steps = cells[f"{names[0]} {epochs}"]["step"]
    setup = (f"{MODELS[args.preset]} (`--preset {args.preset}`), dynamic binarization, mini-batches of 50, Adam at "
             f"{args.lr}, {epochs} epochs ({steps} steps; the paper: 10⁶ steps, 5 seeds; here one seed, {args.seed}). "
             f"Guide-gradient variance: the mean over the guide's scalar parameters of the variance of "
             f"{args.samples} estimates on one fixed batch of 50, at the end of training (concrete's is the gradient "
             f"of its relaxed objective, a biased estimate of the ELBO's: its variance is low by construction and not "
             f"comparable one for one). Test columns: nats per test image, ± the standard error over the test points.")
    table = [f"| estimator | train (what it trains) | test ELBO | test log p̂_{k}(x) | guide grad variance | "
             f"guide SNR | s/epoch |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name in names:
        last, end = cells[f"{name} {epochs}"], cells[f"{name} end"]
        table.append(f"| {name} | {last['train']:.2f} ({TRAINS.get(name, 'ELBO')}) | {end['test_elbo']:.2f} ± "
                     f"{end['test_elbo_se']:.2f} | {end['test_bound']:.2f} ± {end['test_bound_se']:.2f} | "
                     f"{last['guide_variance']:.3g} | {last['guide_snr']:.3g} | {end['seconds_per_epoch']:.1f} |")
    during = ["Guide-gradient variance during training (figure: `variance.png`):", "",
              "| estimator | " + " | ".join(f"epoch {m}" for m in marks) + " |", "|---|" + "---:|" * len(marks)]
    for name in names:
        during.append(f"| {name} | " + " | ".join(f"{cells[f'{name} {m}']['guide_variance']:.3g}" for m in marks)
                      + " |")
    os.makedirs(args.out, exist_ok=True)
    plot(cells, names, marks, os.path.join(args.out, "variance.png"))
    write_table(args.out, f"Dong, Mnih & Tucker 2020 (DisARM), reduced scale: {args.dataset}", setup, table,
                "\n".join([f"The paper reports {PAPER}. Its numbers are for 10⁶ steps and are not reproduced at this "
                           "scale; the ordering is what this table checks.", "", *during]), also=" and variance.png")


def plot(cells: dict, names: list[str], marks: list[int], path: str) -> None:
    from ppl_vae.viz.figures import figure, save

    fig, axes = figure(11, 4, ncols=2, squeeze=False)
    for name in names:
        steps = [cells[f"{name} {m}"]["step"] for m in marks]
        axes[0][0].plot(steps, [cells[f"{name} {m}"]["guide_variance"] for m in marks], "o-", label=name)
        axes[0][1].plot(steps, [cells[f"{name} {m}"]["train"] for m in marks], "o-",
                        label=f"{name} ({TRAINS.get(name, 'ELBO')})")
    axes[0][0].set_yscale("log")
    axes[0][0].set_ylabel("guide gradient variance (mean over φ)")
    axes[0][1].set_ylabel("training value, nats per image")
    for ax in axes[0]:
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, path)


if __name__ == "__main__":
    sys.exit(main())
