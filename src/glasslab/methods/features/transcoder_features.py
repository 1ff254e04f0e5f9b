"""Transcoder features as first-class features: their dashboards and automatic labels, and both precomputed for
a whole set.

A feature of layer L's transcoder is read from ``blocks.L.mlp.in`` by its encoder column and writes its decoder
row into the residual stream (``mlp_out``), so its dashboard (top contexts, histogram, pushed tokens) and its
label are the SAE views of its basis (``basis.TranscoderBasis``): ``feature_dashboard(model, transcoders[L],
feature)`` works as for an SAE. A set loaded with ``TranscoderSet.load`` knows its folder; ``precompute_
transcoders`` scans the corpus once per layer and writes each layer's ``labels.json`` and atlas
(``dashboards.safetensors``) beside its weights, recorded in the set's one manifest, so the set still verifies
and every dashboard afterwards is a file lookup.

A cross-layer transcoder (``CrossLayerTranscoderSet``) is read the same way: ``transcoders.transcoder(s)`` is
source layer s's features, read from its input by its encoder and pushing tokens by the sum of its decoders
over every later layer (their whole write into the residual stream); loaded from a folder, its files go in
``layer-<s>/`` there (recorded in a manifest where the folder has one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ...cluster import ClusterSpec
from ...dictionaries.cross_layer import CrossLayerTranscoderSet
from ...dictionaries.labels_file import LABELS_FILE, labels_json, read_labels
from ...dictionaries.transcoder_set import TranscoderSet, layer_folder
from ...errors import InputError
from ...model.model import Model
from ...store import replace_files
from ...views.result import Result
from .atlas import ATLAS_FILE, atlas_bytes
from .dashboard import FeatureDashboard, feature_dashboard
from .labels import _training_corpus, describe_features

AnySet = TranscoderSet | CrossLayerTranscoderSet  # what a dashboard or a precompute reads, per (source) layer


def transcoder_dashboard(
    model: Model, transcoders: AnySet, layer: int, feature: int, **options: Any
) -> FeatureDashboard:
    """The dashboard of ``feature`` of layer ``layer``'s transcoder (``feature_dashboard``'s options): read from
    the set's precomputed atlas when it has one, else a live scan."""
    return feature_dashboard(model, transcoders.transcoder(layer), feature, **options)


@dataclass(frozen=True)
class TranscodersPrecomputed(Result):
    """What ``precompute_transcoders`` wrote: per layer, the dashboards and labels, from which text."""

    kind = "transcoder_precompute"

    model: str
    folder: str
    corpus: str
    tokens: int  # scanned per layer
    layers: dict[int, dict[str, int]]  # layer -> dashboards, labels, concepts


def precompute_transcoders(
    model: Model,
    transcoders: AnySet,
    *,
    layers: list[int] | None = None,
    corpus: str | None = None,
    tokens: int = 131_072,
    held_out_tokens: int = 32_768,
    seq_len: int = 128,
    cluster: str | ClusterSpec | None = None,
    workers: int | None = None,
    worker_gpus: float = 0.0,
) -> TranscodersPrecomputed:
    """Label every feature and precompute every dashboard of each layer (``layers``: default all) of a set
    loaded from its folder: ``tokens`` of the corpus's train split scanned per layer (default corpus: the set's
    training corpus), each label's detection score on ``held_out_tokens`` of its test split. Labels a person
    wrote are kept; each layer's files replace the old ones at once. ``cluster``/``workers``/``worker_gpus``
    run the scans on Ray (``scan_features``)."""
    if transcoders.folder is None and isinstance(transcoders, CrossLayerTranscoderSet):
        raise InputError(
            "this cross-layer transcoder was not read from a local folder: download it, then name the folder"
        )
    if transcoders.folder is None:
        raise InputError("this transcoder set was not loaded from a folder: save it, then load it by name")
    chosen = transcoders.layers if layers is None else [int(layer) for layer in layers]
    if not chosen:
        raise InputError("no layers given; name at least one layer of the set")
    for layer in chosen:
        transcoders.transcoder(layer)  # a one-line error for a layer the set lacks, before any scan
    seq_len = min(seq_len, model.context_length or seq_len)
    options = {
        "corpus": corpus or _training_corpus(transcoders.folder),
        "sequences": max(1, math.ceil(tokens / seq_len)),
        "held_out_sequences": max(1, math.ceil(held_out_tokens / seq_len)),
        "seq_len": seq_len,
        "cluster": cluster,
        "workers": workers,
        "worker_gpus": worker_gpus,
    }
    written: dict[int, dict[str, int]] = {}
    for layer in chosen:  # each scan shows its own progress, named by the layer's hook
        summary = _precompute_layer(model, transcoders, layer, options)
        written[layer] = {key: summary[key] for key in ("dashboards", "labels", "concepts")}
    return TranscodersPrecomputed(
        model=model.name,
        folder=str(transcoders.folder),
        corpus=summary["corpus"],
        tokens=summary["tokens"],
        layers=written,
    )


def _precompute_layer(model: Model, transcoders: AnySet, layer: int, options: dict[str, Any]) -> dict:
    """One layer's labels and atlas, written into its folder through the set's manifest; their summary."""
    transcoder = transcoders.transcoder(layer)
    described = describe_features(model, transcoder, **options)
    sub, folder = layer_folder(layer), transcoders.folder
    assert folder is not None  # precompute_transcoders refuses a set without one
    (folder / sub).mkdir(exist_ok=True)  # a published cross-layer transcoder's first precompute makes it
    kept = read_labels(folder / sub, transcoder.d_sae)
    labels = {**described.labels, **{f: entry for f, entry in kept.items() if entry.source != "auto"}}
    files = {
        f"{sub}/{ATLAS_FILE}": atlas_bytes(described.atlas),
        f"{sub}/{LABELS_FILE}": labels_json(labels, **described.provenance),
    }
    replace_files(
        folder,
        {name: lambda path, content=content: path.write_bytes(content) for name, content in files.items()},
    )
    transcoder.labels_cache = transcoder.atlas_cache = None  # read the new files on the next dashboard
    return described.summary()
