"""DRAW (Gregor et al. 2015) from Python: the library's model, trained by ``fit`` and evaluated, its canvas
drawn step by step. One module holds the model and the guide (the guide reads the canvas the decoder
writes), so the factory hands out its two methods.

    python scripts/examples/draw.py --epochs 20
"""

from __future__ import annotations

import argparse

from ppl_vae import evaluate, fit
from ppl_vae.data import load
from ppl_vae.models.draw import DRAW


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description="DRAW on the bundled digits")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--no-attention", dest="attention", action="store_false")
    args = p.parse_args(argv)
    data = load("digits", binarize="dynamic")

    def make_pair(data):
        draw = DRAW(data.image_shape, latent_dim=10, steps=args.steps, hidden=128, attention=args.attention)
        return draw.model, draw.guide

    history = fit(make_pair, data, "elbo", epochs=args.epochs, seed=0, progress=False, device="cpu")
    draw = history.model.__self__
    result = evaluate(draw.model, draw.guide, data.x_test, particles=50)
    canvases = draw.canvases(data.x_test[:1])  # [T, 1, 64]: σ(c_t) after each step
    print(f"DRAW, {args.steps} steps{'' if args.attention else ' without attention'}, {args.epochs} epochs: test bound "
          f"{history[-1]['test_bound']:.2f}, NLL {result['test_nll']:.2f} nats per image (K = 50); the first test "
          f"image's canvas ink after each step: {', '.join(f'{c.sum().item():.1f}' for c in canvases)}")
    return {"train_bound": history[-1]["train_bound"], "test_bound": history[-1]["test_bound"],
            "test_nll": result["test_nll"]}


if __name__ == "__main__":
    main()
