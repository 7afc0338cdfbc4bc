"""A normalizing-flow posterior against a diagonal Gaussian on a curved 2-D posterior.

A thin command-line wrapper: it runs the first cell and the banana's sections of
notebooks/08_posterior_families.py (the demonstration's home; see scripts/teach/_notebook.py) with
the options below as the notebook's flags, and writes its figures to --out. The toy posterior:
prior z ~ N(0, I₂) and one observation y = 0 of y | z ~ N(z₂ − z₁², 0.3²), so
p(z | y) ∝ N(z; 0, I) N(0; z₂ − z₁², 0.3²) lies along the parabola z₂ = z₁², a banana. Two
variational families are fitted by maximizing the ELBO
L(q) = E_q[log p(y, z) − log q(z)] = log p(y) − KL(q ‖ p(· | y)) with reparameterized gradients:

- a diagonal Gaussian q(z) = N(m, diag s²);
- a normalizing flow (Rezende & Mohamed 2015): z = f_L ∘ … ∘ f_1(ε), ε ~ N(0, I), with
  planar layers f(z) = z + u tanh(wᵀz + b) from ``pyro.distributions.transforms``, whose
  density follows from the change of variables, log q(z) = log N(ε) − Σ_l log |det ∂f_l/∂z|.

log p(y) is computed by quadrature on a grid, so KL(q ‖ p) = log p(y) − L(q) is exact up to
the Monte-Carlo error of L: the flow bends along the banana, the Gaussian cannot.

    python scripts/teach/flow_posterior.py [--steps 2000] [--layers 16] [--out runs/teach/flow_posterior]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _notebook import run  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--layers", type=int, default=16, help="planar layers")
    parser.add_argument("--samples", type=int, default=256, help="draws per ELBO gradient")
    parser.add_argument("--out", default="runs/teach/flow_posterior")
    args = parser.parse_args(argv)
    run("08_posterior_families.py", {"STEPS": args.steps, "LAYERS": args.layers, "SAMPLES": args.samples}, args.out,
        [("densities", "the banana-shaped posterior, then 100 000 draws of each fitted q with the posterior's "
                       "contours at 5%, 30% and 70% of its peak — the Gaussian covers the bend's middle, the flow "
                       "follows it."),
         ("elbo", "the ELBO of each family while fitting, below log p(y) by KL(q ‖ p).")],
        sections=("Fitting the two families", "What each family can fit"))


if __name__ == "__main__":
    main()
