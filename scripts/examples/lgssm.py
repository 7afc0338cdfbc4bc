"""Sequences with an exact answer: a linear-Gaussian state-space model, its Kalman log-likelihood, the
bounds of ppl-vae against it, and FIVO's particle filter.

Sequences of lengths 10…20 are drawn from a 2-dimensional latent linear dynamical system observed in
3 dimensions (``ppl_vae.models.lgssm``); a second LGSSM, started elsewhere, is fitted to them with
``fit`` — the ``elbo`` objective under the guide that samples the exact posterior (the Kalman
smoother's backward kernels), so its ELBO is log p(x) and each step climbs the likelihood — and
its Kalman log p(x) on held-out sequences is printed beside the true parameters'. Then, at the true
parameters, the bounds on log p(x) that K particles give: the ELBO and the IWAE bound of a guide of
the smoothing marginals (independent across time), and the SMC bound of a bootstrap particle filter
(FIVO, ``ppl_vae.inference.smc``), each against the Kalman value. The bootstrap filter proposes from
the transition, blind to x_t, so at small K it trails a guide that has seen the whole sequence; its
bound still reaches log p(x) as K grows (``tests/inference/test_smc.py``).

    python scripts/examples/lgssm.py
"""

from __future__ import annotations

import argparse

import pyro
import torch

from ppl_vae import Dataset, fit
from ppl_vae.inference import objectives
from ppl_vae.inference.smc import smc_log_marginal
from ppl_vae.models.lgssm import LGSSM, Bootstrap

T_MAX, X_DIM, Z_DIM = 20, 3, 2


def truth() -> LGSSM:
    torch.manual_seed(0)
    m = LGSSM(X_DIM, Z_DIM)
    with torch.no_grad():
        m.A.copy_(torch.tensor([[0.95, 0.2], [-0.2, 0.9]]))
        m.log_q.fill_(-1.0)
        m.log_r.fill_(-0.7)
    return m.requires_grad_(False).eval()  # fixed: nothing of it trains


def sequences(m: LGSSM, n: int, seed: int) -> dict:
    """n sequences [n, 20, 3] from the model, padded with zeros past their lengths 10…20."""
    pyro.set_rng_seed(seed)
    lengths = torch.randint(T_MAX // 2, T_MAX + 1, (n,))
    trace = pyro.poutine.trace(pyro.poutine.uncondition(m.model)).get_trace(torch.zeros(n, T_MAX, X_DIM))
    x = torch.stack([trace.nodes[f"x_{t}"]["value"] for t in range(T_MAX)], 1).detach()
    return {"x": x * (torch.arange(T_MAX) < lengths[:, None])[..., None], "lengths": lengths}


def make_pair(data):
    m = LGSSM(X_DIM, Z_DIM)
    return m.model, m.exact_guide


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description="an LGSSM: Kalman against ELBO, IWAE and FIVO")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--particles", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    true = truth()
    train, test = sequences(true, 300, args.seed + 1), sequences(true, 100, args.seed + 2)
    history = fit(make_pair, Dataset.from_tensors(train, test), "elbo", epochs=args.epochs, batch_size=50, lr=0.02,
                  seed=args.seed, progress=False, device="cpu")
    fitted = history.model.__self__
    x, lengths = test["x"], test["lengths"]
    with torch.no_grad():
        kalman = {"fitted": fitted.log_marginal(x, lengths).mean().item(),
                  "true": true.log_marginal(x, lengths).mean().item()}
        pyro.set_rng_seed(args.seed)
        k = args.particles
        bounds = {"elbo": objectives.make("elbo").test_bound(true.model, true.marginal_guide, x, lengths=lengths),
                  "iwae": objectives.make("iwae", particles=k).test_bound(true.model, true.marginal_guide, x,
                                                                           lengths=lengths),
                  "fivo": smc_log_marginal(true, Bootstrap(true), x, k, lengths)}
        bounds = {name: value.mean().item() for name, value in bounds.items()}
    print(f"fitted by elbo under the exact posterior guide, {args.epochs} epochs: Kalman log p(x) {kalman['fitted']:.2f} "
          f"nats per test sequence (the true parameters: {kalman['true']:.2f}; 100 sequences of 10-20 steps)")
    print(f"at the true parameters: ELBO {bounds['elbo']:.2f} and IWAE (K = {k}) {bounds['iwae']:.2f} of the "
          f"smoothing-marginal guide, FIVO (bootstrap filter, K = {k}) {bounds['fivo']:.2f}, "
          f"Kalman log p(x) {kalman['true']:.2f}")
    return {**{f"kalman_{k}": v for k, v in kalman.items()}, **bounds}


if __name__ == "__main__":
    main()
