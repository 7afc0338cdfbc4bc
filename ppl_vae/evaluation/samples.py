"""Sample quality by comparison: are the model's samples distinguishable from the test images?

Samples are x ~ p_θ(x) drawn by the model itself (``poutine.uncondition``: every observed site
sampled from its distribution, latents from the prior), one per test image, with the test
points' named inputs where the pair takes them. Two two-sample statistics compare them with
the test images:

- the classifier two-sample test (C2ST; Lopez-Paz & Oquab 2017): a classifier
  (scikit-learn's ``MLPClassifier``, one hidden layer of 64) learns to tell samples (label 1)
  from test images (label 0) on half of each, and its accuracy on the other half is reported
  with its binomial standard error √(a(1 − a)/n). 0.5 means indistinguishable to that
  classifier; 1 means every sample is told apart;
- the unbiased MMD² between the two sets in pixel space (Gretton et al. 2012), with the RBF
  kernel exp(−‖u − v‖² / h) and h the median squared distance between the pooled points.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from pyro import poutine

from ppl_vae.errors import UsageError
from ppl_vae.inference.objectives.mmd import rbf_mmd2

HIDDEN = 64


@torch.no_grad()
def model_samples(model, x: torch.Tensor, inputs: dict | None = None) -> torch.Tensor:
    """One sample x ~ p_θ(x) per row of ``x`` (its shape; its named inputs), from the model's own sampling."""
    inputs = inputs or {}
    conditioned = poutine.trace(model).get_trace(x, **inputs)
    sites = [name for name, site in conditioned.nodes.items()
             if site["type"] == "sample" and site["is_observed"] and is_view_of(site["value"], x)]
    if not sites:
        raise UsageError("no sample site of the model observes the data tensor itself (obs=x, or a reshape of it), "
                         "so its samples cannot be told from the data's; write the likelihood as "
                         "pyro.sample(..., obs=x).")
    sampled = poutine.trace(poutine.uncondition(model)).get_trace(x, **inputs)
    return sampled.nodes[sites[0]]["value"].reshape(x.shape)


def is_view_of(value, x: torch.Tensor) -> bool:
    """Whether ``value`` is ``x`` or x seen in another shape (Pyro's vae.py observes x.reshape(-1, 784))."""
    return value is x or (torch.is_tensor(value) and value.numel() == x.numel() and value.dtype == x.dtype
                          and value.data_ptr() == x.data_ptr() and value.is_contiguous() and x.is_contiguous())


def c2st(a: np.ndarray, b: np.ndarray, seed: int = 0) -> dict:
    """The classifier two-sample test between the rows of ``a`` and of ``b``: held-out accuracy and its SE."""
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    features = np.concatenate([a, b]).reshape(len(a) + len(b), -1)
    labels = np.concatenate([np.zeros(len(a)), np.ones(len(b))])
    x_fit, x_held, y_fit, y_held = train_test_split(features, labels, test_size=0.5, stratify=labels,
                                                    random_state=seed)
    classifier = MLPClassifier(hidden_layer_sizes=(HIDDEN,), max_iter=500, random_state=seed)
    with warnings.catch_warnings():  # a classifier that has not converged still gives a valid held-out accuracy
        warnings.simplefilter("ignore")
        classifier.fit(x_fit, y_fit)
    accuracy = float((classifier.predict(x_held) == y_held).mean())
    return {"c2st_accuracy": accuracy, "c2st_se": math.sqrt(accuracy * (1 - accuracy) / len(y_held)),
            "c2st_fit_points": len(y_fit), "c2st_held_out_points": len(y_held),
            "c2st_classifier": f"MLPClassifier(hidden_layer_sizes=({HIDDEN},)), scikit-learn"}


def pixel_mmd2(a: torch.Tensor, b: torch.Tensor) -> dict:
    """Unbiased MMD² between the rows of ``a`` and ``b``, RBF kernel with the median heuristic."""
    a, b = a.reshape(len(a), -1).double(), b.reshape(len(b), -1).double()
    pooled = torch.cat([a, b])
    h = torch.cdist(pooled, pooled).pow(2).median().item()
    return {"mmd2": rbf_mmd2(a, b, bandwidth=h).item(), "mmd_bandwidth": h}


def compare_with_test(model, x_test: torch.Tensor, inputs: dict | None = None, seed: int = 0) -> tuple[dict, torch.Tensor]:
    """(C2ST and MMD² of samples from the model, one per test image, against the test images; the samples)."""
    samples = model_samples(model, x_test, inputs)
    result = {"n": int(x_test.shape[0]),
              **c2st(x_test.cpu().numpy(), samples.cpu().numpy(), seed=seed), **pixel_mmd2(x_test, samples)}
    return result, samples

