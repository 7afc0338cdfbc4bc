"""A model's own inference network: the ``guide`` method of a model whose guide computes with the model's
networks, so that it cannot be built apart from it: DRAW's encoder reads the canvas that the decoder
writes (:mod:`ppl_vae.models.draw`), AIR's guide and model share the spatial transformer's conventions
and its baseline lives beside them (:mod:`ppl_vae.models.air`). The registry builds the model first and
takes its guide."""

from __future__ import annotations


class ModelsOwn:
    # What the registry's compatibility check reads (ppl_vae.registry.check):
    latent_sites = None  # the model's own
    lacks: dict[str, str] = {}
    point_mass = False

    @staticmethod
    def of_model(model):
        """The guide: the model's own ``guide`` method, sharing its parameters."""
        return model.guide
