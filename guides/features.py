"""The feature network h_φ(x) that the amortized guides put their heads on."""

from __future__ import annotations


def encoder_features(config, data):
    """(h_φ, its width): the convolutions of ``models/conv_vae.py`` for the conv-vae, else an MLP."""
    if config.pair.model == "conv-vae":
        from ppl_vae.models.conv_vae import ConvEncoder, checked_image_shape  # only a conv run loads it

        net = ConvEncoder(checked_image_shape(data))
        return net, net.out_features
    from ppl_vae.models.mlp import encoder_body

    return encoder_body(data.x_dim, config.pair.hidden, config.pair.activation)

