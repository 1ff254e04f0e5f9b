"""A ``TranscoderSet`` of random ReLU transcoders for a tiny model, built as a saved set is (one SAELens-layout
transcoder per layer), for the tests of the ``graph`` command, its exports and its endpoint.

Scales as in ``graph_toys.RandomTranscoders``: several features fire on any prompt and what they write stays
near the size of the tiny models' residual stream.
"""

from __future__ import annotations

import torch

from glasslab.dictionaries import dictionary_class
from glasslab.dictionaries.sae_config import SAEConfig
from glasslab.dictionaries.transcoder_set import TranscoderSet


def random_transcoder_set(model, d_sae: int = 24, seed: int = 0) -> TranscoderSet:
    generator = torch.Generator().manual_seed(seed)
    d = model.d_model
    layers = {}
    for layer in range(model.n_layers):
        config = SAEConfig(
            architecture="transcoder",
            d_in=d,
            d_sae=d_sae,
            hook=f"blocks.{layer}.mlp.in",
            hook_out=f"blocks.{layer}.mlp_out",
            d_out=d,
            apply_b_dec_to_input=False,
        )
        transcoder = dictionary_class("transcoder")(config)
        with torch.no_grad():
            transcoder.W_enc.copy_(torch.randn(d, d_sae, generator=generator) * 0.3)
            transcoder.b_enc.copy_(torch.randn(d_sae, generator=generator) * 0.1 - 0.05)
            transcoder.W_dec.copy_(torch.randn(d_sae, d, generator=generator) * 0.1)
            transcoder.b_dec.copy_(torch.randn(d, generator=generator) * 0.01)
        layers[layer] = transcoder
    return TranscoderSet(layers, n_layers=model.n_layers)
