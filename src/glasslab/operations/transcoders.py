"""Transcoder sets (issue 20): build one for every layer in one command, say how long that takes here, measure
a set, list the sets in the store.

The defaults build a set for the offline default model (Gemma 3 270M) in under 30 minutes on two CPU cores:
a ``topk_skip_transcoder`` of 896 features (k 32) per layer, trained on 409,600 tokens read once from the
``english`` corpus. A request (the workbench's "Build transcoders" job) trains from the shipped text with
the sizes bounded (``http_types``): the server holds the shuffle buffer of every layer in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Annotated

from pydantic import Field, StringConstraints

from ..dictionaries.transcoder_catalog import open_transcoders
from ..dictionaries.transcoder_estimate import TranscoderTrainingEstimate, estimate_transcoder_training
from ..dictionaries.transcoder_train import TranscoderTrainConfig, training_cluster
from ..methods.features.transcoder_training import (
    TrainedTranscoders,
    TranscoderSets,
    train_transcoder_set,
    transcoder_sets,
)
from ..methods.features.transcoders import TranscoderEvaluation, evaluate_transcoders
from ..model.model import Model
from .graphs import TranscodersName
from .options import MAX_LIST, Cli, Index, Options, Seed, VectorName
from .probing import parse_layers
from .scale import ClusterAddress, WorkerGpus, Workers
from .spec import OperationSpec

Count = Annotated[int, Field(ge=1, le=10**12)]
Corpus = Annotated[
    str,
    Field(
        min_length=1, max_length=1000, description="english (offline text), a .txt/.jsonl file or folder, or hf:NAME."
    ),
]


class TranscoderSizes(Options):
    """What a set is trained on and how: shared by the training and its estimate."""

    architecture: Annotated[
        str,
        Field(
            min_length=1,
            max_length=100,
            description="topk_skip_transcoder, topk_transcoder, jumprelu_(skip_)transcoder or (skip_)transcoder.",
        ),
    ] = "topk_skip_transcoder"
    d_sae: Annotated[int | None, Field(ge=1, le=1_000_000, description="Features per layer.")] = 896
    expansion: Annotated[
        int | None, Field(ge=1, le=4096, description="Or features per model dimension (overrides --d-sae).")
    ] = None
    k: Annotated[int, Field(ge=1, le=1_000_000, description="TopK: active features per token.")] = 32
    tokens: Annotated[Count, Field(description="Tokens every layer trains on (steps x batch size).")] = 409_600
    harvest_tokens: Annotated[
        Count | None, Field(description="Read at most this many tokens through the model (none: the corpus).")
    ] = 409_600
    buffer_tokens: Annotated[
        Count, Field(description="Tokens held in memory for shuffling (every layer's input and output).")
    ] = 16_384
    batch_size: Annotated[int, Field(ge=1, le=1_000_000, description="Tokens per training step.")] = 2048
    lr: Annotated[float, Field(gt=0.0, le=10.0, description="Adam learning rate.")] = 2e-3
    corpus: Corpus = "english"
    seed: Annotated[Seed, Field(description="Random seed (layer L's weights use seed + L).")] = 0
    seq_len: Annotated[int, Field(ge=2, le=1_000_000, description="Tokens per packed sequence.")] = 128
    layers: Annotated[
        list[Index] | None,
        Field(min_length=1, max_length=MAX_LIST, description="Only these layers, e.g. 0,4,8 or 2-10 (default: all)."),
        Cli(parse=parse_layers, whole=True),
    ] = None


class TranscoderTrainOptions(TranscoderSizes):
    activations: Annotated[
        str | None,
        StringConstraints(min_length=1, max_length=2000),
        Field(description="Read every layer's mlp.in and mlp_out from a harvest (its --out) instead of the model."),
    ] = None
    cluster: ClusterAddress = None
    workers: Workers = None
    worker_gpus: WorkerGpus = 0.0
    name: Annotated[
        str | None,
        StringConstraints(min_length=1, max_length=200),
        Field(description="Name in the store (default: mlp-architecture-width-k)."),
    ] = None
    fresh: Annotated[
        bool, Field(description="Discard a checkpoint of this name and start over."), Cli(("--fresh",))
    ] = False
    evaluate_tokens: Annotated[
        int,
        Field(ge=0, le=100_000_000, description="Held-out tokens for each layer's FVE, L0 and dead (0: no check)."),
        Cli(("--eval-tokens",)),
    ] = 16384
    evaluate_loss_tokens: Annotated[
        int,
        Field(ge=0, le=10_000_000, description="Held-out tokens for loss recovered (4 full passes each)."),
        Cli(("--eval-loss-tokens",)),
    ] = 2048
    on_cluster: Annotated[
        bool,
        Field(
            description="Harvest and train on the Ray cluster the server was started with (glasslab serve --cluster)."
        ),
    ] = False


def train_config(
    *,
    architecture: str = "topk_skip_transcoder",
    d_sae: int | None = 896,
    expansion: int | None = None,
    k: int = 32,
    tokens: int = 409_600,
    harvest_tokens: int | None = 409_600,
    buffer_tokens: int = 16_384,
    batch_size: int = 2048,
    lr: float = 2e-3,
    corpus: str = "english",
    seed: int = 0,
    seq_len: int = 128,
    layers: Sequence[int] | None = None,
) -> TranscoderTrainConfig:
    """The trainer's settings for the options (``expansion``, when given, sets the width instead of ``d_sae``)."""
    return TranscoderTrainConfig(
        architecture=architecture,
        expansion=expansion or 1,
        d_sae=None if expansion else d_sae,
        k=k,
        tokens=tokens,
        harvest_tokens=harvest_tokens,
        buffer_tokens=buffer_tokens,
        batch_size=batch_size,
        lr=lr,
        corpus=corpus,
        seed=seed,
        seq_len=seq_len,
        layers=None if layers is None else tuple(layers),
    )


def train(
    model: Model,
    *,
    architecture: str = "topk_skip_transcoder",
    d_sae: int | None = 896,
    expansion: int | None = None,
    k: int = 32,
    tokens: int = 409_600,
    harvest_tokens: int | None = 409_600,
    buffer_tokens: int = 16_384,
    batch_size: int = 2048,
    lr: float = 2e-3,
    corpus: str = "english",
    seed: int = 0,
    seq_len: int = 128,
    layers: Sequence[int] | None = None,
    activations: str | None = None,
    cluster: str | None = None,
    workers: int | None = None,
    worker_gpus: float = 0.0,
    name: str | None = None,
    fresh: bool = False,
    evaluate_tokens: int = 16384,
    evaluate_loss_tokens: int = 2048,
    command: str | None = None,
    announce: Callable[[TranscoderTrainingEstimate], None] | None = None,
) -> TrainedTranscoders:
    """Train a transcoder for every layer (or ``layers``) from one harvest, evaluate the set on the corpus's test
    split and save it with ``training.json`` (resumable: an interrupted training keeps a checkpoint). With
    ``announce``, the training is first measured (``estimate``) and the estimate handed to it. ``activations``
    reads the MLPs' inputs and outputs from a harvest instead of running the model; ``cluster`` trains from it
    data-parallel on Ray (``workers`` must divide ``batch_size``; the evaluation runs here)."""
    config = train_config(
        architecture=architecture, d_sae=d_sae, expansion=expansion, k=k, tokens=tokens,
        harvest_tokens=harvest_tokens, buffer_tokens=buffer_tokens, batch_size=batch_size, lr=lr, corpus=corpus,
        seed=seed, seq_len=seq_len, layers=layers,
    )  # fmt: skip
    config = replace(config, activations=activations)
    cluster_options = dict(cluster=cluster, workers=workers, worker_gpus=worker_gpus)
    training_cluster(config=config, **cluster_options)  # a bad combination fails before the estimate runs
    if announce is not None and activations is None:  # the estimate times the model's pass a harvest replaces
        announce(estimate_transcoder_training(model, config))
    evaluation = dict(evaluate_tokens=evaluate_tokens, evaluate_loss_tokens=evaluate_loss_tokens)
    return train_transcoder_set(
        model, config, name=name, fresh=fresh, command=command, **evaluation, **cluster_options
    )  # fmt: skip


def estimate(
    model: Model,
    *,
    architecture: str = "topk_skip_transcoder",
    d_sae: int | None = 896,
    expansion: int | None = None,
    k: int = 32,
    tokens: int = 409_600,
    harvest_tokens: int | None = 409_600,
    buffer_tokens: int = 16_384,
    batch_size: int = 2048,
    lr: float = 2e-3,
    corpus: str = "english",
    seed: int = 0,
    seq_len: int = 128,
    layers: Sequence[int] | None = None,
) -> TranscoderTrainingEstimate:
    """How long ``train`` would take here (measured: a probe of the real trainer; the evaluation not counted)."""
    config = train_config(
        architecture=architecture, d_sae=d_sae, expansion=expansion, k=k, tokens=tokens,
        harvest_tokens=harvest_tokens, buffer_tokens=buffer_tokens, batch_size=batch_size, lr=lr, corpus=corpus,
        seed=seed, seq_len=seq_len, layers=layers,
    )  # fmt: skip
    return estimate_transcoder_training(model, config)


class TranscoderEvalOptions(Options):
    transcoders: Annotated[
        str,
        StringConstraints(min_length=1, max_length=500),
        Field(description="The set: its name in the store for this model; locally also a folder."),
        Cli(argument=True),
    ]
    corpus: Corpus = "english"
    tokens: Annotated[int, Field(ge=1, le=100_000_000, description="Held-out tokens for each layer's figures.")] = 16384
    loss_tokens: Annotated[
        int, Field(ge=0, le=10_000_000, description="Held-out tokens for loss recovered (4 full passes each).")
    ] = 2048
    seq_len: Annotated[int, Field(ge=2, le=1_000_000, description="Tokens per packed sequence.")] = 128


def evaluate(
    model: Model,
    transcoders: str,
    *,
    corpus: str = "english",
    tokens: int = 16384,
    loss_tokens: int = 2048,
    seq_len: int = 128,
) -> TranscoderEvaluation:
    """Per-layer FVE, L0 and dead features, and loss recovered with every MLP replaced, on the test split."""
    loaded = open_transcoders(transcoders, model)
    return evaluate_transcoders(model, loaded, corpus=corpus, tokens=tokens, loss_tokens=loss_tokens, seq_len=seq_len)


class NoOptions(Options):
    """The sets listed are those of the model."""


def listed(model: Model) -> TranscoderSets:
    return transcoder_sets(model)


GROUP = "circuits"
# A request trains from the shipped text with bounded sizes (the server holds the shuffle buffer in memory).
HTTP_SIZES = (
    ("d_sae", Annotated[int, Field(ge=1, le=65_536)] | None),
    ("expansion", Annotated[int, Field(ge=1, le=64)] | None),
    ("k", Annotated[int, Field(ge=1, le=512)]),
    ("tokens", Annotated[int, Field(ge=64, le=4_194_304)]),
    ("harvest_tokens", Annotated[int, Field(ge=64, le=1_048_576)] | None),
    ("buffer_tokens", Annotated[int, Field(ge=64, le=65_536)]),
    ("batch_size", Annotated[int, Field(ge=64, le=16_384)]),
    ("seq_len", Annotated[int, Field(ge=2, le=512)]),
    ("name", VectorName | None),  # a plain store name
)
OPERATIONS = [
    OperationSpec(
        "transcoders-train",
        TranscoderTrainOptions,
        train,
        TrainedTranscoders,
        "Build a transcoder set: one transcoder per layer from one pass of text, then evaluated (resumable).",
        GROUP,
        long=True,
        local_only=frozenset(
            {"corpus", "fresh", "evaluate_loss_tokens", "activations", "cluster", "workers", "worker_gpus"}
        ),
        http_types=HTTP_SIZES,
        python_only=frozenset({"command", "announce"}),
        # A request may only ask for the cluster the server's operator chose; the CLI and Python name theirs.
        server_only=frozenset({"on_cluster"}),
    ),
    OperationSpec(
        "transcoders-estimate",
        TranscoderSizes,
        estimate,
        TranscoderTrainingEstimate,
        "How long building a transcoder set would take here (measured: a probe of the real trainer).",
        GROUP,
        long=True,
        local_only=frozenset({"corpus"}),
        http_types=HTTP_SIZES[:-1],
    ),
    OperationSpec(
        "transcoders-eval",
        TranscoderEvalOptions,
        evaluate,
        TranscoderEvaluation,
        "A transcoder set's quality on held-out text: per-layer FVE, L0, dead; loss with every MLP replaced.",
        GROUP,
        long=True,
        local_only=frozenset({"corpus"}),
        http_types=(("transcoders", TranscodersName),),
    ),
    OperationSpec(
        "transcoders-list",
        NoOptions,
        listed,
        TranscoderSets,
        "The transcoder sets saved in the store for the model (what glasslab graph -t can name).",
        GROUP,
    ),
]
