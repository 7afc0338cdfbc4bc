"""The deep Markov model (Krishnan et al. 2017) from Python, trained by the particle filter's bound (FIVO)
and by IWAE with the same K, then set on one yardstick by ``evaluate``. Model and guide are written one
time step at a time (``init``, ``step``: ``ppl_vae.steps``), so the same programs serve both objectives.

    python scripts/examples/dmm_fivo.py --epochs 20
"""

from __future__ import annotations

import argparse

from ppl_vae import evaluate, fit
from ppl_vae.data import load
from ppl_vae.guides.sequence import RNNGuide
from ppl_vae.models.dmm import DMM


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description="a DMM by FIVO and by IWAE")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--particles", type=int, default=4)
    args = p.parse_args(argv)
    data = load("lgssm", binarize="none")  # sequences [N, 20, 3] and their lengths, a named input
    x_dim = data.x_shape[-1]

    def make_pair(data):
        return DMM(x_dim, latent_dim=2, hidden=64).model, RNNGuide(x_dim, latent_dim=2, hidden=64)

    out = {}
    for objective in ("fivo", "iwae"):
        history = fit(make_pair, data, objective, particles=args.particles, epochs=args.epochs, seed=0, progress=False,
                      device="cpu")
        result = evaluate(history.model, history.guide, data.x_test, particles=100, inputs=data.inputs_test)
        out[objective] = {"train_bound": history[-1]["train_bound"], "test_bound": history[-1]["test_bound"],
                          "test_nll": result["test_nll"]}
        print(f"{objective} (K = {args.particles}), {args.epochs} epochs: its own test bound "
              f"{history[-1]['test_bound']:.2f}; NLL {result['test_nll']:.2f} nats per sequence, "
              f"{result['test_nll'] / result['mean_length']:.3f} per step (K = 100)")
    return {"train_bound": out["fivo"]["train_bound"], "test_bound": out["fivo"]["test_bound"],
            "iwae_test_nll": out["iwae"]["test_nll"], "fivo_test_nll": out["fivo"]["test_nll"]}


if __name__ == "__main__":
    main()
