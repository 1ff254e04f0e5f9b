"""Random per-layer transcoders for tiny models, for the attribution-graph tests.

They implement the interface the graph reads (``glasslab.methods.graphs.replacement.Transcoders``) with ReLU
features, an optional affine skip and an optional cross-layer decoder (a feature at layer s also writes to
every later layer), so the tests can check the graph's arithmetic on every family without training anything.
Their scales keep what they write near the size of the tiny models' residual stream: a toy writing far more
would make the error nodes cancel large numbers and the checks measure float rounding instead.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


class RandomTranscoders:
    def __init__(
        self,
        model,
        d_sae: int = 48,
        *,
        skip: bool = False,
        cross_layer: bool = False,
        seed: int = 0,
        reads: str = "mlp.in",
    ):
        generator = torch.Generator().manual_seed(seed)
        self.reads = reads
        d, self.n_layers, self.cross_layer = model.d_model, model.n_layers, cross_layer

        def draw(*shape, scale=1.0):
            return torch.randn(*shape, generator=generator) * scale

        self.W_enc = [draw(d, d_sae, scale=0.3) for _ in range(self.n_layers)]
        self.b_enc = [draw(d_sae, scale=0.1) - 0.05 for _ in range(self.n_layers)]
        self.W_dec = {
            (s, t): draw(d_sae, d, scale=0.1)
            for t in range(self.n_layers)
            for s in range(self.n_layers)
            if s == t or (cross_layer and s < t)
        }
        self.b_dec = [draw(d, scale=0.01) for _ in range(self.n_layers)]
        self.W_skip = [draw(d, d, scale=0.01) for _ in range(self.n_layers)] if skip else None

    def input_hook(self, layer: int) -> str:
        return f"blocks.{layer}.{self.reads}"

    def output_hook(self, layer: int) -> str:
        return f"blocks.{layer}.mlp_out"

    def d_sae(self, layer: int) -> int:
        return self.W_enc[layer].shape[1]

    def encode(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x.float() @ self.W_enc[layer] + self.b_enc[layer])

    def encoder(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.W_enc[layer], self.b_enc[layer]

    def decoder(self, source_layer: int, target_layer: int) -> torch.Tensor | None:
        return self.W_dec.get((source_layer, target_layer))

    def output_bias(self, layer: int) -> torch.Tensor:
        return self.b_dec[layer]

    def skip(self, layer: int) -> torch.Tensor | None:
        return None if self.W_skip is None else self.W_skip[layer]

    def reconstruct(self, layer: int, acts_by_layer: Mapping[int, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        out = self.b_dec[layer].clone()
        for source, acts in acts_by_layer.items():
            decoder = self.decoder(source, layer)
            if decoder is not None:
                out = out + acts.float() @ decoder
        if self.W_skip is not None:
            out = out + x.float() @ self.W_skip[layer]
        return out
