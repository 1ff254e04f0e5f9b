"""Finding a transcoder set by what a user types: ``default`` (shipped for the offline default model), a
name in the store, a folder in any published layout, or a hub repository.

The shipped sets live in the package (``glasslab/sae/shipped_transcoders/<name>``, a glasslab set folder
with its ``training.json``), so the offline default model has transcoders, and so attribution graphs, with
no training and no network.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import InputError
from ..model.model import Model
from ..store import TRANSCODERS, is_name, location
from .cross_layer import CrossLayerTranscoderSet
from .hub import same_model
from .published_transcoders import CIRCUIT_TRACER_CONFIG, load_transcoders
from .transcoder_set import SET_FILE, TranscoderSet

SHIPPED_TRANSCODERS = Path(__file__).resolve().parents[1] / "sae" / "shipped_transcoders"
DEFAULT = "default"
# What marks a circuit-tracer set (a cross-layer transcoder among them) copied into the store as it was published.
PUBLISHED_SETS = (CIRCUIT_TRACER_CONFIG, "W_enc_0.safetensors")


def shipped_transcoders() -> Iterator[tuple[str, Path, str | None]]:
    """(name, folder, model name) of each set shipped with glasslab."""
    if not SHIPPED_TRANSCODERS.is_dir():
        return
    for folder in sorted(SHIPPED_TRANSCODERS.iterdir()):
        try:
            description = json.loads((folder / SET_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a damaged shipped folder is reported when it is opened by name, not while listing
        yield folder.name, folder, description.get("model_name")


def open_transcoders(
    name_or_path: str | os.PathLike, model: Model, *, layers: Sequence[int] | None = None
) -> TranscoderSet | CrossLayerTranscoderSet:
    """The set ``name_or_path`` names for ``model``: ``default`` or ``default:NAME`` (shipped), a store name
    (a glasslab set, or a folder in a published layout copied into the store, so a request can name a
    cross-layer transcoder), a folder (any published layout) or a hub repository ``OWNER/REPO``. ``layers``
    reads only those layers of a glasslab set (one feature's dashboard needs one layer)."""
    text = str(name_or_path)
    if text == DEFAULT or text.startswith(DEFAULT + ":"):
        folder = _shipped_folder(text.removeprefix(DEFAULT).removeprefix(":"), model)
        return TranscoderSet.load(folder, model, layers=layers)
    if is_name(text) and not Path(text).expanduser().is_dir():
        stored = location(TRANSCODERS, model.key, text)
        if not (stored / SET_FILE).is_file() and any((stored / name).is_file() for name in PUBLISHED_SETS):
            return load_transcoders(stored, model)
        return TranscoderSet.load(text, model, layers=layers)
    if layers is not None and (Path(text).expanduser() / SET_FILE).is_file():
        return TranscoderSet.load(Path(text).expanduser(), model, layers=layers)
    return load_transcoders(text, model)


def set_folder(name: str, model: Model) -> Path:
    """The folder a set's name refers to (shipped or in the store), so callers can notice when its files change."""
    if name == DEFAULT or name.startswith(DEFAULT + ":"):
        return _shipped_folder(name.removeprefix(DEFAULT).removeprefix(":"), model)
    return location(TRANSCODERS, model.key, name)


def shipped_summary(folder: Path) -> dict:
    """What a listing says of a shipped set: its kind, layers and width, read from its files."""
    description = json.loads((folder / SET_FILE).read_text(encoding="utf-8"))
    first = folder / description["folders"][str(description["layers"][0])] / "cfg.json"
    config = json.loads(first.read_text(encoding="utf-8"))
    layers = len(description["layers"])
    return {"shipped": True, "architecture": config.get("architecture"), "layers": layers, "d_sae": config.get("d_sae")}


def _shipped_folder(name: str, model: Model) -> Path:
    fitting = [
        (n, folder) for n, folder, made_for in shipped_transcoders() if made_for and same_model(made_for, model.name)
    ]
    if name:
        for n, folder in fitting:
            if n == name:
                return folder
        raise InputError(f"no transcoder set '{name}' is shipped for {model.name}; shipped: {_names(fitting)}")
    if not fitting:
        raise InputError(
            f"no transcoder set is shipped for {model.name}; train one with `glasslab transcoders train` "
            "or name one in the store or a folder"
        )
    return fitting[0][1]


def _names(fitting: list[tuple[str, Path]]) -> str:
    return ", ".join(name for name, _ in fitting) or "none"
