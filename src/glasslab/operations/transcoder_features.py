"""Transcoder features as features (issue 20 item 5): one feature's dashboard, and every feature of a set
labelled with its dashboard precomputed (``glasslab transcoders feature|precompute``).

A set is named as ``open_transcoders`` reads it: ``default`` (shipped), a name in the store for the loaded
model (a glasslab set, or a published layout copied there, e.g. a cross-layer transcoder), or locally a
folder; a request names only a store name. A cross-layer transcoder's features are named by source layer. The
precompute scans the corpus once per layer (minutes to hours on a real model), so it is offered on the command
line and in Python only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from pydantic import Field, StringConstraints

from ..dictionaries.transcoder_catalog import open_transcoders
from ..methods.features.dashboard import FeatureDashboard
from ..methods.features.transcoder_features import (
    TranscodersPrecomputed,
    precompute_transcoders,
    transcoder_dashboard,
)
from ..model.model import Model
from .graphs import TranscodersName
from .options import MAX_LIST, Cli, Index, Options
from .probing import parse_layers
from .scale import ClusterAddress, WorkerGpus, Workers
from .spec import OperationSpec

SetName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=500),
    Field(description="The set: its name in the store for this model; locally also a folder."),
    Cli(argument=True),
]


class TranscoderDashboardOptions(Options):
    transcoders: SetName
    layer: Annotated[
        Index,
        Field(description="The feature's layer (a cross-layer transcoder's: its source layer)."),
        Cli(argument=True),
    ]
    feature: Annotated[Index, Field(description="The feature's index in its layer."), Cli(argument=True)]
    sequences: Annotated[
        int | None, Field(ge=1, le=512, description="Sequences to scan live (default: precomputed, else 64).")
    ] = None
    seq_len: Annotated[
        int | None, Field(ge=8, le=256, description="Tokens per sequence of a live scan (default 64).")
    ] = None
    k: Annotated[int, Field(ge=1, le=50, description="Top-activating contexts to keep.")] = 10
    corpus: Annotated[
        str | None,
        Field(
            max_length=500,
            description="Scan this corpus live (english, a .txt/.jsonl file or folder, or hf:NAME) instead of "
            "reading the set's precomputed dashboards.",
        ),
    ] = None


def feature(
    model: Model,
    transcoders: str,
    layer: int,
    feature: int,
    *,
    sequences: int | None = None,
    seq_len: int | None = None,
    k: int = 10,
    corpus: str | None = None,
) -> FeatureDashboard:
    """A transcoder feature's dashboard: top contexts, histogram, the tokens its decoder row pushes (read from
    the set's precomputed dashboards when it has them; only that layer's transcoder is loaded)."""
    loaded = open_transcoders(transcoders, model, layers=[layer])
    scan = dict(corpus=corpus, sequences=sequences, seq_len=seq_len, k=k)
    return transcoder_dashboard(model, loaded, layer, feature, **scan)


class TranscoderPrecomputeOptions(Options):
    transcoders: SetName
    tokens: Annotated[
        int, Field(ge=1, le=100_000_000, description="Train-split tokens scanned per layer for contexts and labels.")
    ] = 131_072
    held_out_tokens: Annotated[
        int, Field(ge=1, le=10_000_000, description="Test-split tokens on which each label's detection is scored.")
    ] = 32_768
    corpus: Annotated[
        str | None,
        Field(max_length=1000, description="Corpus to scan (default: the set's training corpus, else builtin)."),
    ] = None
    seq_len: Annotated[int, Field(ge=2, le=1_000_000, description="Tokens per packed sequence.")] = 128
    layers: Annotated[
        list[Index] | None,
        Field(min_length=1, max_length=MAX_LIST, description="Only these layers, e.g. 0,4,8 or 2-10 (default: all)."),
        Cli(parse=parse_layers, whole=True),
    ] = None
    cluster: ClusterAddress = None
    workers: Workers = None
    worker_gpus: WorkerGpus = 0.0


def precompute(
    model: Model,
    transcoders: str,
    *,
    tokens: int = 131_072,
    held_out_tokens: int = 32_768,
    corpus: str | None = None,
    seq_len: int = 128,
    layers: Sequence[int] | None = None,
    cluster: str | None = None,
    workers: int | None = None,
    worker_gpus: float = 0.0,
) -> TranscodersPrecomputed:
    """Label every feature of a set and precompute every dashboard: one scan of the corpus per layer, written
    beside each layer in the set's folder (its manifest kept valid)."""
    loaded = open_transcoders(transcoders, model, layers=None if layers is None else list(layers))
    return precompute_transcoders(
        model,
        loaded,
        layers=None if layers is None else list(layers),
        corpus=corpus,
        tokens=tokens,
        held_out_tokens=held_out_tokens,
        seq_len=seq_len,
        cluster=cluster,
        workers=workers,
        worker_gpus=worker_gpus,
    )


GROUP = "circuits"
OPERATIONS = [
    OperationSpec(
        "transcoders-dashboard",
        TranscoderDashboardOptions,
        feature,
        FeatureDashboard,
        "A transcoder feature's dashboard: top contexts over the corpus (precomputed when the set has them), "
        "histogram, pushed tokens, label.",
        GROUP,
        long=True,
        local_only=frozenset({"corpus"}),
        http_types=(("transcoders", TranscodersName),),
    ),
    OperationSpec(
        "transcoders-precompute",
        TranscoderPrecomputeOptions,
        precompute,
        TranscodersPrecomputed,
        "Label every feature of a transcoder set and precompute every dashboard (one corpus scan per layer).",
        GROUP,
        long=True,
        # Minutes to hours of scanning on the model worker: the command line only, for now.
        http=False,
    ),
]
