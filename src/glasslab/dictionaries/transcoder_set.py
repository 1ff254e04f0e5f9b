"""A set of transcoders for one model, one per layer, each reading ``blocks.L.mlp.in`` and predicting
``blocks.L.mlp_out``: the replacement of every MLP that attribution graphs are built on.

The accessors speak per layer, in glasslab's orientation (matrices act on row vectors). ``decoder(s, t)``
takes a source and a target layer so cross-layer transcoders (a feature at layer s writing to every layer
>= s) fit the same interface later; per-layer transcoders write only to their own layer.

On disk (store kind ``transcoders``): ``transcoders.json`` (model, layers, kind) and one SAELens-layout
folder per layer, ``layer-<L>/`` (``cfg.json`` + ``sae_weights.safetensors``), saved atomically with a
manifest through ``glasslab.store``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError
from ..model.model import Model
from ..store import TRANSCODERS, is_name, resolve, save
from .files import load_dictionary_folder, write_sae_files
from .fit import hook_width
from .hub import same_model
from .origins import SAEOrigin, with_origin
from .transcoder import Transcoder

SET_FILE = "transcoders.json"
SET_FORMAT = 1


def layer_folder(layer: int) -> str:
    return f"layer-{layer}"


class TranscoderSet:
    """Transcoders by layer for one model (``n_layers`` layers; ``layers`` those that have one)."""

    def __init__(self, transcoders: Mapping[int, Transcoder], *, n_layers: int, model_name: str | None = None):
        if not transcoders:
            raise InputError("a transcoder set needs at least one transcoder")
        bad = [layer for layer in transcoders if not 0 <= layer < n_layers]
        if bad:
            raise InputError(f"layers {bad} are outside the model's 0..{n_layers - 1}")
        self.n_layers = n_layers
        self.model_name = model_name
        self.folder: Path | None = None  # where it was loaded from (its labels and dashboards sit beside each layer)
        self._by_layer = dict(sorted(transcoders.items()))

    @property
    def layers(self) -> list[int]:
        return list(self._by_layer)

    def __getitem__(self, layer: int) -> Transcoder:
        return self.transcoder(layer)

    def transcoder(self, layer: int) -> Transcoder:
        if not isinstance(layer, int) or isinstance(layer, bool) or layer not in self._by_layer:
            raise InputError(f"no transcoder for layer {layer!r}; this set has layers {self._describe_layers()}")
        return self._by_layer[layer]

    def _describe_layers(self) -> str:
        layers = self.layers
        if layers == list(range(layers[0], layers[-1] + 1)) and len(layers) > 2:
            return f"{layers[0]}..{layers[-1]}"
        return ", ".join(map(str, layers))

    def __repr__(self) -> str:
        first = self.transcoder(self.layers[0])
        return (
            f"TranscoderSet({first.architecture}, {self.model_name}, layers {self._describe_layers()}, "
            f"d_sae={first.d_sae})"
        )

    # -- per layer --------------------------------------------------------------------------------------
    def input_hook(self, layer: int) -> str:
        return self.transcoder(layer).hook

    def output_hook(self, layer: int) -> str:
        return self.transcoder(layer).hook_out or f"blocks.{layer}.mlp_out"

    def d_sae(self, layer: int) -> int:
        return self.transcoder(layer).d_sae

    def encode(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """[..., d_in] -> [..., d_sae] feature activations of layer ``layer``'s transcoder."""
        transcoder = self.transcoder(layer)
        self._check_width(transcoder, x, transcoder.d_in, "input")
        return transcoder.encode(x)

    def encoder(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(W [d_in, d_sae], b [d_sae]): the nonlinearity's pre-activation is ``x @ W + b`` (before the
        threshold or the top-k); transcoders read raw inputs, so no normalisation is left to fold."""
        transcoder = self.transcoder(layer)
        return transcoder.W_enc, transcoder.b_enc

    def decoder(self, source_layer: int, target_layer: int) -> torch.Tensor | None:
        """[d_sae of source, d_out]: what source features write into the target layer's output; None where
        they write nothing there (per-layer transcoders write only to their own layer)."""
        transcoder = self.transcoder(source_layer)
        self.transcoder(target_layer)
        return transcoder.W_dec if source_layer == target_layer else None

    def output_bias(self, layer: int) -> torch.Tensor:
        return self.transcoder(layer).b_dec

    def skip(self, layer: int) -> torch.Tensor | None:
        """W_skip [d_in, d_out] (row-vector orientation), or None for transcoders without a skip."""
        return self.transcoder(layer).skip_matrix

    def reconstruct(self, layer: int, acts_by_layer: Mapping[int, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """The prediction of layer ``layer``'s output: sum over source layers of ``acts @ decoder(s, layer)``,
        plus ``output_bias(layer)``, plus ``x @ skip(layer)`` (``x`` is the layer's input)."""
        target = self.transcoder(layer)
        self._check_width(target, x, target.d_in, "input")
        out = target.b_dec.to(x.dtype).expand(*x.shape[:-1], target.d_out)
        for source, acts in acts_by_layer.items():
            weights = self.decoder(source, layer)
            if weights is None:
                continue
            self._check_width(self.transcoder(source), acts, weights.shape[0], f"layer {source}'s feature")
            out = out + acts.to(weights.dtype) @ weights
        skip = self.skip(layer)
        return out if skip is None else out + x.to(skip.dtype) @ skip

    @staticmethod
    def _check_width(transcoder: Transcoder, x: torch.Tensor, width: int, what: str) -> None:
        if x.shape[-1] != width:
            raise InputError(
                f"{what} activations must be {width} wide for {transcoder.hook}'s transcoder, got {x.shape[-1]}"
            )

    # -- models and files -------------------------------------------------------------------------------
    def check_fits(self, model: Model, *, allow_other_model: bool = False) -> None:
        """One-line error if the set was made for another model (layer count, hooks, widths, name)."""
        if self.n_layers != model.n_layers:
            raise InputError(
                f"this transcoder set is for a {self.n_layers}-layer model; {model.name} has {model.n_layers}"
            )
        if self.model_name and not allow_other_model and not same_model(self.model_name, model.name):
            raise InputError(f"these transcoders were trained on {self.model_name}, not {model.name}")
        for layer in self.layers:
            transcoder = self.transcoder(layer)
            widths = (hook_width(model, transcoder.hook), hook_width(model, self.output_hook(layer)))
            if widths != (transcoder.d_in, transcoder.d_out):
                raise InputError(
                    f"layer {layer}'s transcoder maps {transcoder.d_in} -> {transcoder.d_out} wide activations but "
                    f"{model.name} has {widths[0]} -> {widths[1]}: it was made for another model"
                )

    def to(self, device: str | torch.device) -> TranscoderSet:
        for transcoder in self._by_layer.values():
            transcoder.to(device)
        return self

    def save(
        self,
        name_or_path: str | Path,
        model_key: str,
        *,
        extra_files: Mapping[str, bytes] | None = None,
        dtype: torch.dtype | None = None,
    ) -> Path:
        """Write the set atomically (with a manifest) to the store as ``name`` for ``model_key``, or to a
        folder; ``extra_files`` (e.g. ``training.json``) go beside ``transcoders.json``."""
        first = self.transcoder(self.layers[0])
        summary = {"architecture": first.architecture, "layers": len(self.layers), "d_sae": first.d_sae}
        with save(TRANSCODERS, model_key, name_or_path, summary=summary) as staging:
            for layer, transcoder in self._by_layer.items():
                (staging / layer_folder(layer)).mkdir()
                write_sae_files(transcoder, staging / layer_folder(layer), dtype=dtype)
            for file, content in (extra_files or {}).items():
                if Path(file).name != file or file == SET_FILE:
                    raise InputError(f"extra file name '{file}' must be a plain file name other than {SET_FILE}")
                (staging / file).write_bytes(content)
            (staging / SET_FILE).write_text(json.dumps(self._description(), indent=2) + "\n", encoding="utf-8")
        return resolve(TRANSCODERS, model_key, name_or_path)

    def _description(self) -> dict[str, Any]:
        return {
            "format": SET_FORMAT,
            "kind": "per_layer_transcoders",
            "model_name": self.model_name,
            "n_layers": self.n_layers,
            "layers": self.layers,
            "folders": {str(layer): layer_folder(layer) for layer in self.layers},
        }

    @classmethod
    def load(
        cls,
        name_or_path: str | Path,
        model: Model | None = None,
        *,
        model_key: str | None = None,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        allow_other_model: bool = False,
        layers: Sequence[int] | None = None,
    ) -> TranscoderSet:
        """A saved set, by store name (for ``model`` or ``model_key``) or folder; checked against ``model``.
        ``layers`` reads only those layers' transcoders (one feature's dashboard needs one layer). Each
        transcoder knows its folder (``origin``): its labels and precomputed dashboards sit there."""
        key = model.key if model is not None else model_key
        if key is None and is_name(name_or_path):
            raise InputError(f"'{name_or_path}' names a transcoder set of one model in the store: pass the model")
        folder = resolve(TRANSCODERS, key, name_or_path)
        description = _read_description(folder)
        folders = {int(text): sub for text, sub in description["folders"].items()}
        missing = sorted(set(layers or ()) - set(folders))
        if missing:
            raise InputError(
                f"the transcoder set '{name_or_path}' has no layer {missing[0]} (it has {sorted(folders)})"
            )
        transcoders = {}
        for layer, sub in folders.items():
            if layers is not None and layer not in layers:
                continue
            loaded = load_dictionary_folder(folder / sub, dtype=dtype, device=device, kind=Transcoder)
            origin = SAEOrigin(source=f"{name_or_path} layer {layer}", folder=folder / sub)
            transcoders[layer] = with_origin(loaded, origin)  # type: ignore[arg-type]
        found = cls(transcoders, n_layers=int(description["n_layers"]), model_name=description.get("model_name"))
        found.folder = folder
        if model is not None:
            found.check_fits(model, allow_other_model=allow_other_model)
        return found


def _read_description(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / SET_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(
            f"'{folder / SET_FILE}' is unreadable ({exc.__class__.__name__}); the set is damaged"
        ) from None
    if not isinstance(data, dict) or data.get("format") != SET_FORMAT or not isinstance(data.get("folders"), dict):
        raise InputError(f"'{folder / SET_FILE}' is not a transcoder set glasslab can read (format {SET_FORMAT})")
    return data
