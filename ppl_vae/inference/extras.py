"""What a :class:`~ppl_vae.pair.Pair` adds to a training step: extra losses beside the objective.

Pyro's semi-supervised VAE (Kingma et al. 2014, M2) trains its classifier q(y | x) with a second
loss, α · E_labelled[−log q(y | x)], added to the negative ELBO. :class:`WithLosses` computes the
objective's loss and gradients as it would alone, then each extra loss ℓ(model, guide, x, **inputs)
and its gradients, which add to the objective's before the optimizer steps. The loss it returns
— the training bound — is the objective's alone; the extra losses' sum is kept apart.
"""

from __future__ import annotations

import torch

from ppl_vae.inference.guard import backward
from ppl_vae.pair import Pair, passing


class WithLosses:
    """``loss`` (an objective's ``loss``, eager or recorded) with the pair's extra losses added to its gradients."""

    def __init__(self, loss, pair: Pair):
        self.loss, self.pair = loss, pair
        self.passing = [passing(extra) for extra in pair.losses]
        self.total: torch.Tensor | float = 0.0  # Σ of the extra losses since the last :meth:`take_total`

    def backward(self, model, guide, x, idx=None, **inputs):
        value = backward(self.loss, model, guide, x, idx, **inputs)
        for extra, kwargs in zip(self.pair.losses, self.passing):
            term = extra(self.pair.model, self.pair.guide, x, **kwargs(idx, inputs))
            if torch.is_tensor(term) and term.requires_grad:
                term.backward()
            self.total = self.total + (term.detach() if torch.is_tensor(term) else float(term))
        return value

    @property
    def touched(self) -> list:
        """The parameters a recorded step last read (:class:`~ppl_vae.inference.record.Recorded`), else none."""
        return getattr(self.loss, "touched", [])

    def take_total(self) -> float:
        total, self.total = self.total, 0.0
        return float(total)
