"""An ``Edit``: weight changes of MLP output projections, applied to a model only while asked.

ROME and MEMIT return an ``Edit`` without touching the model. ``with edit.applied(model):`` changes the
weights for the block and puts the originals back afterwards, also after an exception; ``edit.apply(model)``
/ ``edit.undo()`` do the same without a block. Restoring copies the saved original tensors back, so the
weights are bit-for-bit what they were (subtracting the delta again would not be, in floating point).
Applying checks every layer before changing any, and undoes what it changed if it fails midway.

Deltas are stored in the projection's own weight layout (``[out, in]`` for ``nn.Linear``, ``[in, out]``
for GPT-2's ``Conv1D``), in float32. ``save`` writes ``delta.safetensors`` (one tensor per layer) and
``edit.json`` (model key, method, facts, layers, numbers) atomically, with the store's manifest
(``glasslab.store.EDITS``: ``editing/<model key>/edits/<name>/``, or a folder); ``load_edit`` reads them
back (edits saved before manifests too) and refuses a model with another key.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ...errors import GlasslabError, InputError
from ...model.model import Model
from ...store import EDITS, locate, resolve, save
from ...views.explanations import explanation
from ...views.figures import Bars, Figure
from ...views.result import Result
from .facts import Fact, fact_from_dict

FORMAT = 1
_DELTA, _META = "delta.safetensors", "edit.json"


def projection_weight(model: Model, layer: int) -> torch.nn.Parameter:
    """The MLP output projection's weight at ``layer`` (the matrix an edit changes), in its module's layout."""
    if not 0 <= layer < model.n_layers:
        raise InputError(f"layer must be in 0..{model.n_layers - 1}, got {layer}")
    return model.weights.parameter("W_out", layer)


def to_layout(model: Model, delta: torch.Tensor) -> torch.Tensor:
    """A ``[d_model, d_mlp]`` change (output = W key, i.e. ``W_out`` transposed) in the projection's own layout."""
    return model.weights.to_module_layout("W_out", delta.T)


def from_layout(model: Model, weight: torch.Tensor) -> torch.Tensor:
    """The projection's weight (or a delta in its layout) as ``[d_model, d_mlp]``: ``W_out`` transposed."""
    return model.weights.from_module_layout("W_out", weight).T


@dataclass
class _Applied:
    """Where an edit is applied: the model, and each layer's weights before and after."""

    model: Model | None = None
    originals: dict[int, torch.Tensor] = field(default_factory=dict)
    edited: dict[int, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Edit(Result):
    """Weight deltas for some layers' MLP output projections, made for one model (``key``)."""

    kind = "edit"
    json_keys = (
        "format", "model", "key", "method", "facts", "layers", "delta_norms", "details", "name", "path", "applied",
    )  # fmt: skip

    model: str
    key: str
    method: str  # "rome" or "memit"
    facts: tuple[Fact, ...]
    layers: tuple[int, ...]
    deltas: dict[int, torch.Tensor] = field(repr=False)  # layer -> float32 delta in the weight's layout
    details: dict = field(default_factory=dict)  # JSON-able numbers from the method (losses, norms, ...)
    # What each layer's change was solved for: keys [facts, d_mlp] and the projection outputs wanted there
    # [facts, d_model] (ROME meets them exactly, MEMIT in the least-squares sense); float64.
    keys: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)
    values: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)
    name: str | None = None
    path: Path | None = None
    _state: _Applied = field(default_factory=_Applied, repr=False, compare=False)

    @property
    def is_applied(self) -> bool:
        return self._state.model is not None

    def delta_norms(self) -> dict[int, float]:
        return {layer: float(self.deltas[layer].norm()) for layer in self.layers}

    # -- applying ----------------------------------------------------------------------------------
    def apply(self, model: Model) -> Edit:
        """Change ``model``'s weights in place (until ``undo``); every layer is checked before any changes."""
        if self.is_applied:
            raise InputError("this edit is already applied; call undo() first (or use `with edit.applied(model):`)")
        if model.key != self.key:
            raise InputError(f"this edit was made for {self.key}, not {model.key}; make the edit for this model")
        weights = {layer: projection_weight(model, layer) for layer in self.layers}
        for layer, weight in weights.items():
            delta = self.deltas[layer]
            if delta.shape != weight.shape:
                raise InputError(
                    f"the edit's layer {layer} delta has shape {tuple(delta.shape)} but the weight has "
                    f"{tuple(weight.shape)}"
                )
        state = _Applied(model)
        try:
            with torch.no_grad():
                for layer, weight in weights.items():
                    state.originals[layer] = weight.detach().clone()
                    weight.add_(self.deltas[layer].to(device=weight.device, dtype=weight.dtype))
                    state.edited[layer] = weight.detach().clone()
        except BaseException:
            _restore(weights, state.originals)
            raise
        self._state.model, self._state.originals, self._state.edited = model, state.originals, state.edited
        return self

    def undo(self) -> None:
        """Put the original weights back exactly; refuses if another change was made on top of this edit."""
        model = self._state.model
        if model is None:
            raise InputError("this edit is not applied; nothing to undo")
        weights = {layer: projection_weight(model, layer) for layer in self._state.originals}
        changed = [layer for layer, w in weights.items() if not torch.equal(w.detach(), self._state.edited[layer])]
        if changed:
            raise GlasslabError(
                f"layer {changed[0]}'s weights changed after this edit was applied (another edit on top?); "
                "undo the later edit first"
            )
        _restore(weights, self._state.originals)
        self._state.model, self._state.originals, self._state.edited = None, {}, {}

    @contextlib.contextmanager
    def applied(self, model: Model) -> Iterator[Model]:
        """``with edit.applied(model):`` the edited model inside the block, the original after it."""
        self.apply(model)
        try:
            yield model
        finally:
            self.undo()

    # -- results -----------------------------------------------------------------------------------
    def _json_format(self) -> int:
        return FORMAT

    def _json_delta_norms(self) -> dict[str, float]:
        return {str(layer): norm for layer, norm in self.delta_norms().items()}

    def _json_applied(self) -> bool:
        return self.is_applied

    def figure(self) -> Figure:
        norms = self.delta_norms()
        weight_norms = self.details.get("weight_norms", {})
        return Figure(
            f"{self.model}: {self.method.upper()} edit of {len(self.facts)} fact(s)",
            [
                Bars(
                    "size of the change per layer (Frobenius norm of the weight delta)",
                    [f"L{layer}" for layer in self.layers],
                    [norms[layer] for layer in self.layers],
                    "||delta W||",
                    hover=[
                        f"L{layer}: ||dW|| = {norms[layer]:.4g}"
                        + (f", ||W|| = {weight_norms[str(layer)]:.4g}" if str(layer) in weight_norms else "")
                        for layer in self.layers
                    ],
                )
            ],
            **explanation(
                self.kind,
                facts="; ".join(f.describe() for f in self.facts[:5]) + (" ..." if len(self.facts) > 5 else ""),
            ),
            extra={"method": self.method, "layers": ", ".join(map(str, self.layers))},
        )

    # -- saving ------------------------------------------------------------------------------------
    def save(self, name_or_path: str | Path) -> Edit:
        """Write the deltas and metadata atomically; a bare name goes to the store. Returns the named edit."""
        folder, name = locate(EDITS, self.key, name_or_path)
        saved = replace(self, name=name, path=folder, _state=_Applied())
        with save(EDITS, self.key, name_or_path, summary=_summary(self)) as tmp:
            tensors = {f"layer.{layer}": self.deltas[layer].float().contiguous() for layer in self.layers}
            tensors |= {f"keys.{layer}": k.double().contiguous() for layer, k in self.keys.items()}
            tensors |= {f"values.{layer}": v.double().contiguous() for layer, v in self.values.items()}
            save_file(tensors, str(tmp / _DELTA))
            meta = {k: v for k, v in saved.to_dict().items() if k not in ("path", "applied")}
            (tmp / _META).write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
        return saved


def _summary(edit: Edit) -> dict:
    """What a listing of saved edits shows without loading them."""
    return {"method": edit.method, "facts": len(edit.facts), "layers": list(edit.layers)}


def resolve_edit_path(name_or_path: str | Path, key: str) -> tuple[Path, str | None]:
    """Deprecated: use ``glasslab.store.locate(glasslab.store.EDITS, key, name_or_path)``."""
    warnings.warn(
        "resolve_edit_path is deprecated; use glasslab.store.locate(glasslab.store.EDITS, key, name_or_path)",
        DeprecationWarning,
        stacklevel=2,
    )
    return locate(EDITS, key, name_or_path)


def load_edit(model: Model, name_or_path: str | Path) -> Edit:
    """The edit saved under ``name`` (in the store for this model) or in a folder, checked against ``model``."""
    folder = resolve(EDITS, model.key, name_or_path)
    try:
        meta = json.loads((folder / _META).read_text(encoding="utf-8"))
        tensors = load_file(str(folder / _DELTA))
        layers = tuple(int(layer) for layer in meta["layers"])
        edit = Edit(
            model=str(meta["model"]),
            key=str(meta["key"]),
            method=str(meta["method"]),
            facts=tuple(fact_from_dict(f) for f in meta["facts"]),
            layers=layers,
            deltas={layer: tensors[f"layer.{layer}"].float() for layer in layers},
            details=dict(meta.get("details", {})),
            keys={layer: tensors[f"keys.{layer}"] for layer in layers if f"keys.{layer}" in tensors},
            values={layer: tensors[f"values.{layer}"] for layer in layers if f"values.{layer}" in tensors},
            name=meta.get("name"),
            path=folder,
        )
        expected = {f"{part}.{layer}" for part in ("layer", "keys", "values") for layer in layers}
        if meta.get("format") != FORMAT or not {f"layer.{layer}" for layer in layers} <= set(tensors) <= expected:
            raise ValueError("unexpected format or tensors")
        if not all(torch.isfinite(d).all() for d in edit.deltas.values()):
            raise ValueError("the deltas hold NaN or infinity")
    except (OSError, ValueError, KeyError, TypeError, AttributeError, SafetensorError, GlasslabError) as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise InputError(f"the edit at {folder} is unreadable ({reason}); make it again") from None
    if edit.key != model.key:
        raise InputError(f"the edit at {folder} was made for {edit.key}, not {model.key}; make one for this model")
    for layer in layers:
        weight = projection_weight(model, layer)
        if edit.deltas[layer].shape != weight.shape:
            raise InputError(f"the edit's layer {layer} delta does not fit {model.name}'s weight {tuple(weight.shape)}")
    return edit


def _restore(weights: dict[int, torch.nn.Parameter], originals: dict[int, torch.Tensor]) -> None:
    with torch.no_grad():
        for layer, original in originals.items():
            weights[layer].copy_(original)
