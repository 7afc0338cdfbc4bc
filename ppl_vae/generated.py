"""Data sets generated here, seeded, so that they are the same on every machine:

- ``lgssm``: sequences from a fixed linear-Gaussian state-space model (:mod:`ppl_vae.models.lgssm`'s
  form), a 2-dimensional latent rotating slowly and decaying, z_t = A z_{t−1} + N(0, q² I), observed in
  3 dimensions, x_t = C z_t + N(0, r² I), z_1 ~ N(0, I); 1000 training and 200 test sequences of
  lengths 10 to 20, padded with zeros to T = 20, their ``lengths`` a named input. Real-valued.
- ``multi-digits``: 24 × 24 scenes of 0, 1 or 2 of the bundled 8 × 8 digits pasted at random places
  (:func:`ppl_vae.scenes.multi_digit_scenes`, the multi-MNIST of Eslami et al. 2016 at the digits' scale),
  3000 training scenes made of the training digits and 500 test scenes of the test digits; the labels
  ``y`` are the scenes' counts (for the figures and the count accuracy; no program gets them). Grey
  levels in [0, 1].

Each is a :class:`~ppl_vae.data.Dataset` like the downloaded ones: the split and the draws never change
with the training seed.
"""

from __future__ import annotations

import torch

from ppl_vae.errors import UsageError

LGSSM_TRUTH = {"A": [[0.95, 0.2], [-0.2, 0.9]], "q": 0.37, "r": 0.5, "x_dim": 3, "t_max": 20}
_SEED = 0


def lgssm_sequences(n: int, generator: torch.Generator, truth: dict = LGSSM_TRUTH) -> dict:
    """{"x": [n, T, d], "lengths": [n]} drawn from the model ``truth`` describes, zero past each length."""
    A = torch.tensor(truth["A"])
    k, t_max, d = A.shape[0], truth["t_max"], truth["x_dim"]
    C = torch.randn(d, k, generator=torch.Generator().manual_seed(_SEED)) / k ** 0.5
    lengths = torch.randint(t_max // 2, t_max + 1, (n,), generator=generator)
    z = torch.randn(n, k, generator=generator)
    xs = []
    for t in range(t_max):
        if t:
            z = z @ A.T + truth["q"] * torch.randn(n, k, generator=generator)
        xs.append(z @ C.T + truth["r"] * torch.randn(n, d, generator=generator))
    x = torch.stack(xs, 1) * (torch.arange(t_max) < lengths[:, None])[..., None]
    return {"x": x, "lengths": lengths}


def lgssm(binarize: str, seed: int, device):
    from ppl_vae.data import Dataset

    if binarize != "none":
        raise UsageError("the lgssm sequences are real-valued, with nothing to binarize; pass --binarize none.")
    g = torch.Generator().manual_seed(_SEED)
    train, test = lgssm_sequences(1000, g), lgssm_sequences(200, g)
    return Dataset.from_tensors(train, test, name="lgssm", seed=seed).to(device)


def multi_digits(binarize: str, seed: int, device):
    from ppl_vae.data import Dataset, _load_digits
    from ppl_vae.scenes import multi_digit_scenes

    if binarize != "none":
        raise UsageError("the multi-digits scenes are grey levels for AIR's Gaussian likelihood; pass --binarize none.")
    (train_digits, _), (test_digits, _) = _load_digits()
    train = multi_digit_scenes(train_digits, 3000, seed=_SEED)
    test = multi_digit_scenes(test_digits, 500, seed=_SEED + 1)
    return Dataset.from_tensors(train["x"], test["x"], y_train=train["counts"], y_test=test["counts"],
                                name="multi-digits", image_shape=(1, 24, 24), seed=seed).to(device)


GENERATED = {"lgssm": lgssm, "multi-digits": multi_digits}
