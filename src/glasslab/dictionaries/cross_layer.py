"""Cross-layer transcoders (CLTs): a feature reads one layer's MLP input and writes to that layer's MLP output
and every later one's (Ameisen et al. 2025). ``CrossLayerTranscoderSet`` speaks ``TranscoderSet``'s per-layer
interface, so attribution graphs read it unchanged: ``decoder(s, t)`` is the s -> t decoder for ``t >= s``.

Held in glasslab's orientation (matrices act on row vectors): per layer ``W_enc [d_in, d_sae]``, ``b_enc``,
optional JumpReLU ``threshold``, ``W_dec[s] [d_sae, n_layers - s, d_out]`` (target ``t`` at index ``t - s``),
``b_dec [d_out]`` per target layer and an optional skip ``[d_in, d_out]`` per layer. Readers for
circuit-tracer's and Gemma Scope 2's files are in ``published_transcoders``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from ..errors import InputError
from ..model.model import Model
from .fit import hook_width
from .hub import same_model


@dataclass
class CrossLayerWeights:
    """One source layer's weights (see the module docstring for shapes)."""

    W_enc: torch.Tensor
    b_enc: torch.Tensor
    W_dec: torch.Tensor
    b_dec: torch.Tensor
    threshold: torch.Tensor | None = None
    skip: torch.Tensor | None = None


class CrossLayerTranscoderSet:
    """A cross-layer transcoder over every layer of one model, reading ``input_hooks`` and writing ``mlp_out``."""

    def __init__(
        self,
        layers: Sequence[CrossLayerWeights],
        *,
        input_hooks: Sequence[str] | None = None,
        model_name: str | None = None,
        source: str = "cross-layer transcoder",
    ) -> None:
        if not layers:
            raise InputError(f"{source}: a cross-layer transcoder needs at least one layer")
        self.n_layers = len(layers)
        self.model_name = model_name
        self._layers = list(layers)
        self._inputs = list(input_hooks or [f"blocks.{layer}.mlp.in" for layer in range(self.n_layers)])
        for layer, weights in enumerate(self._layers):
            self._check(layer, weights, source)

    def _check(self, layer: int, weights: CrossLayerWeights, source: str) -> None:
        """One-line errors for shapes that disagree between a layer's tensors or across layers."""
        if weights.W_enc.dim() != 2:
            raise InputError(f"{source}: layer {layer}'s encoder must be a matrix, got {list(weights.W_enc.shape)}")
        d_in, d_sae = weights.W_enc.shape
        d_out = self._layers[0].b_dec.shape[-1]
        expected = {
            "b_enc": (d_sae,),
            "W_dec": (d_sae, self.n_layers - layer, d_out),
            "b_dec": (d_out,),
            "threshold": (d_sae,),
            "skip": (d_in, d_out),
        }
        for name, shape in expected.items():
            value = getattr(weights, name)
            if value is not None and tuple(value.shape) != shape:
                raise InputError(
                    f"{source}: layer {layer}'s {name} has shape {list(value.shape)}, expected {list(shape)} "
                    f"({self.n_layers} layers, d_in={d_in}, d_sae={d_sae}, d_out={d_out})"
                )
            if value is not None and not bool(torch.isfinite(value).all()):
                raise InputError(f"{source}: layer {layer}'s {name} contains NaN or infinite values")

    @property
    def layers(self) -> list[int]:
        return list(range(self.n_layers))

    def __repr__(self) -> str:
        kind = "jumprelu" if self._layers[0].threshold is not None else "relu"
        return f"CrossLayerTranscoderSet({kind}, {self.model_name}, {self.n_layers} layers, d_sae={self.d_sae(0)})"

    def _weights(self, layer: int) -> CrossLayerWeights:
        if not isinstance(layer, int) or isinstance(layer, bool) or not 0 <= layer < self.n_layers:
            raise InputError(f"no layer {layer!r} in this cross-layer transcoder (layers 0..{self.n_layers - 1})")
        return self._layers[layer]

    # -- the per-layer interface (``glasslab.methods.graphs.replacement.Transcoders``) --------------------
    def input_hook(self, layer: int) -> str:
        self._weights(layer)
        return self._inputs[layer]

    def output_hook(self, layer: int) -> str:
        self._weights(layer)
        return f"blocks.{layer}.mlp_out"

    def d_sae(self, layer: int) -> int:
        return int(self._weights(layer).W_enc.shape[1])

    def encoder(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        weights = self._weights(layer)
        return weights.W_enc, weights.b_enc

    def encode(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """[..., d_in] -> [..., d_sae]: ReLU, or JumpReLU (``pre * (pre > threshold)``) where a threshold is stored."""
        weights = self._weights(layer)
        self._check_width(x, weights.W_enc.shape[0], f"layer {layer}'s input")
        pre = x.to(weights.W_enc.dtype) @ weights.W_enc + weights.b_enc
        if weights.threshold is None:
            return torch.relu(pre)
        return pre * (pre > weights.threshold)

    def decoder(self, source_layer: int, target_layer: int) -> torch.Tensor | None:
        """[d_sae, d_out]: what layer ``source_layer``'s features write into ``target_layer``'s MLP output;
        None for earlier targets (features write forwards only)."""
        weights = self._weights(source_layer)
        self._weights(target_layer)
        if target_layer < source_layer:
            return None
        return weights.W_dec[:, target_layer - source_layer]

    def output_bias(self, layer: int) -> torch.Tensor:
        return self._weights(layer).b_dec

    def skip(self, layer: int) -> torch.Tensor | None:
        return self._weights(layer).skip

    def reconstruct(self, layer: int, acts_by_layer: Mapping[int, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """``sum_{s <= layer} acts[s] @ decoder(s, layer) + output_bias(layer) + x @ skip(layer)``."""
        target = self._weights(layer)
        self._check_width(x, target.W_enc.shape[0], f"layer {layer}'s input")
        out = target.b_dec.to(x.dtype).expand(*x.shape[:-1], target.b_dec.shape[-1])
        for source, acts in acts_by_layer.items():
            weights = self.decoder(source, layer)
            if weights is None:
                continue
            self._check_width(acts, weights.shape[0], f"layer {source}'s feature")
            out = out + acts.to(weights.dtype) @ weights
        return out if target.skip is None else out + x.to(target.skip.dtype) @ target.skip

    @staticmethod
    def _check_width(x: torch.Tensor, width: int, what: str) -> None:
        if x.shape[-1] != width:
            raise InputError(f"{what} activations must be {width} wide, got {x.shape[-1]}")

    # -- models ---------------------------------------------------------------------------------------------
    def check_fits(self, model: Model, *, allow_other_model: bool = False) -> None:
        """One-line error if the set was made for another model (layer count, widths, name)."""
        if self.n_layers != model.n_layers:
            raise InputError(
                f"this cross-layer transcoder spans {self.n_layers} layers; {model.name} has {model.n_layers}"
            )
        if self.model_name and not allow_other_model and not same_model(self.model_name, model.name):
            raise InputError(f"these transcoders were trained on {self.model_name}, not {model.name}")
        for layer, weights in enumerate(self._layers):
            widths = (hook_width(model, self._inputs[layer]), model.d_model)
            if widths != (weights.W_enc.shape[0], weights.b_dec.shape[-1]):
                raise InputError(
                    f"layer {layer} of the cross-layer transcoder maps {weights.W_enc.shape[0]} -> "
                    f"{weights.b_dec.shape[-1]} wide activations but {model.name} has {widths[0]} -> {widths[1]}"
                )

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> CrossLayerTranscoderSet:
        for weights in self._layers:
            for name in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold", "skip"):
                value = getattr(weights, name)
                if value is not None:
                    setattr(weights, name, value.to(device=device, dtype=dtype))
        return self
