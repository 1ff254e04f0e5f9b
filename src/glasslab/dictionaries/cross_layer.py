"""Cross-layer transcoders (CLTs): a feature reads one layer's MLP input and writes to that layer's MLP output
and every later one's (Ameisen et al. 2025). ``CrossLayerTranscoderSet`` speaks ``TranscoderSet``'s per-layer
interface, so attribution graphs read it unchanged: ``decoder(s, t)`` is the s -> t decoder for ``t >= s``.

Held in glasslab's orientation (matrices act on row vectors): per layer ``W_enc [d_in, d_sae]``, ``b_enc``,
optional JumpReLU ``threshold``, ``W_dec[s] [d_sae, n_layers - s, d_out]`` (target ``t`` at index ``t - s``),
``b_dec [d_out]`` per target layer and an optional skip ``[d_in, d_out]`` per layer. Readers for
circuit-tracer's and Gemma Scope 2's files are in ``published_transcoders``.

Its features are features like a per-layer transcoder's: ``transcoder(s)`` views source layer s as one
transcoder (its encoder; the sum of its decoders), so dashboards, labels and ``precompute_transcoders`` read
it as they read ``TranscoderSet.transcoder(s)``; a set loaded from a folder keeps them in ``layer-<s>/``
there, as a per-layer set does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import InputError
from ..model.model import Model
from .fit import hook_width
from .hub import same_model
from .labels_file import LABELS_FILE, FeatureLabel, read_labels
from .origins import SAEOrigin, with_origin
from .registry import dictionary_class
from .sae_config import SAEConfig
from .transcoder import Transcoder
from .transcoder_set import layer_folder
from .user_labels import folder_for, overlay, sae_key


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
        self.source = source
        self.folder: Path | None = None  # where it was loaded from (its labels and dashboards go in layer-<s>/)
        self._views: dict[int, Transcoder] = {}  # transcoder(s), kept so their labels and atlas are read once
        self._labels: dict[int, tuple[tuple, dict[int, FeatureLabel]]] = {}  # labels(s) and their files' stamps
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

    # -- features ---------------------------------------------------------------------------------------------
    def transcoder(self, layer: int) -> Transcoder:
        """Source layer ``layer``'s features as one transcoder, for their dashboards and labels: its encoder
        at ``input_hook(layer)`` (activation contexts are read there, as for a per-layer transcoder) and, as
        decoder, the sum of its decoders over the target layers ``layer..n_layers - 1``. Every target's
        ``mlp_out`` is added to the residual stream as it is, so that sum is the feature's whole write into the
        stream, and the tokens it pushes directly (through the final norm and unembedding) are the sum's.
        Its ``forward`` therefore predicts no single layer's output (``reconstruct`` does) and it has no skip.
        Its encoder, threshold and ``b_dec`` are the set's own tensors (a CLT's encoders are large: a copy
        would double them); the summed decoder, ``[d_sae, d_out]``, is its only new memory.
        Kept per layer; its folder (``origin``) is ``layer-<layer>/`` of the set's folder, when it has one."""
        if layer not in self._views:
            self._views[layer] = self._view(layer)
        return self._views[layer]

    def _view(self, layer: int) -> Transcoder:
        """``transcoder(layer)`` built: its parameters are the layer's tensors themselves (no copy)."""
        weights = self._weights(layer)
        (d_in, d_sae), d_out = weights.W_enc.shape, weights.b_dec.shape[-1]
        config = SAEConfig(
            architecture="jumprelu_transcoder" if weights.threshold is not None else "transcoder",
            d_in=int(d_in),
            d_sae=int(d_sae),
            hook=self._inputs[layer],
            hook_out=self.output_hook(layer),
            d_out=int(d_out),
            model_name=self.model_name,
            apply_b_dec_to_input=False,
        )
        # Built on 'meta' (nothing allocated), then every parameter replaced by the set's tensor.
        view = dictionary_class(config.architecture)(config, dtype=weights.W_enc.dtype, device="meta")
        tensors = {"W_enc": weights.W_enc, "b_enc": weights.b_enc, "b_dec": weights.b_dec}
        tensors |= {"threshold": weights.threshold, "W_dec": weights.W_dec.sum(1)}
        for name, _ in list(view.named_parameters()):
            tensor = tensors[name].detach().to(device=weights.W_enc.device, dtype=weights.W_enc.dtype)  # type: ignore[union-attr]
            setattr(view, name, nn.Parameter(tensor, requires_grad=False))  # shares the tensor's storage
        origin = SAEOrigin(source=f"{self.source} layer {layer}", folder=self._layer_folder(layer))
        return with_origin(view, origin)  # type: ignore[return-value]

    def _layer_folder(self, layer: int) -> Path | None:
        return None if self.folder is None else self.folder / layer_folder(layer)

    def labels(self, layer: int) -> dict[int, FeatureLabel]:
        """Source layer ``layer``'s feature labels as ``labels_of(self.transcoder(layer))`` gives them (its
        ``labels.json`` with a person's own labels over them), read from its folder without building that view;
        kept, and read again when either file changes; empty for a set not loaded from a folder."""
        folder, d_sae = self._layer_folder(layer), self.d_sae(layer)
        user_folder = None if folder is None else folder_for(sae_key(folder))
        stamp = (_stamp(folder), _stamp(user_folder))
        kept = self._labels.get(layer)
        if kept is None or kept[0] != stamp:
            kept = stamp, overlay(read_labels(folder, d_sae), read_labels(user_folder, d_sae))
            self._labels[layer] = kept
        return kept[1]

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
        self._views.clear()  # built again from the moved weights (a view shares its layer's tensors)
        for weights in self._layers:
            for name in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold", "skip"):
                value = getattr(weights, name)
                if value is not None:
                    setattr(weights, name, value.to(device=device, dtype=dtype))
        return self


def _stamp(folder: Path | None) -> tuple:
    """``folder/labels.json`` as it is now (inode, time, size; () when there is none): any rewrite changes it."""
    try:
        found = (folder / LABELS_FILE).stat() if folder is not None else None
    except OSError:
        return ()
    return () if found is None else (found.st_ino, found.st_mtime_ns, found.st_size)
