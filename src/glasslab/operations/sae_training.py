"""Training an SAE on a hook, and a measured estimate of how long it would take here.

One declaration serves the command line (``glasslab sae train``, ``glasslab sae estimate``) and the
workbench's jobs (``sae-train``, ``sae-train-estimate``). The defaults are the command line's (2,000,000
training tokens, the whole corpus read, 32,768 held-out tokens); the workbench proposes its own smaller sizes
(a few minutes on a laptop: app/sae_training.py) and sends them with every request. A request trains a TopK
SAE on a layer's resid_post from the built-in text, so the other settings are the local faces' only, and it
takes tighter bounds (``http_types``): the server holds the activations in memory.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from pydantic import Field

from ..dictionaries.train import TrainConfig
from ..errors import InputError
from ..methods.features.estimate import TrainingEstimate, estimate_training
from ..methods.features.training import TrainedSAE, train_sae
from ..model.model import Model
from .options import Cli, Index, Options, Seed, VectorName
from .scale import ClusterAddress, WorkerGpus, Workers
from .spec import OperationSpec

MAX_TRAIN_TOKENS = 4_194_304  # a request's limits (the server keeps its pool in memory)
MAX_HARVEST_TOKENS = 524_288
MAX_EVALUATE_TOKENS = 65_536
Count = Annotated[int, Field(ge=1, le=10**12)]


class TrainSizes(Options):
    """What an SAE is trained on and how: shared by the training and its estimate."""

    hook: Annotated[str | None, Field(max_length=200, description="The hook to read, e.g. blocks.6.resid_post.")] = None
    layer: Annotated[Index | None, Field(description="Or a layer: its blocks.LAYER.resid_post.")] = None
    corpus: Annotated[
        str,
        Field(
            min_length=1,
            max_length=1000,
            description="builtin (offline text), a .txt/.jsonl file or folder, or hf:NAME. Its train split.",
        ),
    ] = "builtin"
    architecture: Annotated[
        str, Field(min_length=1, max_length=100, description="topk, jumprelu or standard (ReLU + L1).")
    ] = "topk"
    expansion: Annotated[
        int, Field(ge=1, le=4096, description="Features per input dimension (d_sae = expansion x d_in).")
    ] = 8
    k: Annotated[int, Field(ge=1, le=1_000_000, description="TopK: active features per token.")] = 32
    tokens: Annotated[
        Count,
        Field(
            description="Activations the SAE trains on (steps x batch size). The workbench proposes 262,144.",
        ),
    ] = 2_000_000
    harvest_tokens: Annotated[
        Count | None,
        Field(description="Read at most this many tokens through the model (default: the corpus; a request: 65,536)."),
    ] = None
    buffer_tokens: Annotated[Count, Field(description="Activations held in memory for shuffling and reuse.")] = 500_000
    batch_size: Annotated[int, Field(ge=1, le=1_000_000, description="Activations per training step.")] = 4096
    lr: Annotated[
        float, Field(gt=0.0, le=10.0, description="Adam learning rate (after warm-up, before the final decay).")
    ] = 1e-3
    l1: Annotated[float, Field(ge=0.0, le=1e6, description="standard: L1 coefficient.")] = 5.0
    l0: Annotated[float, Field(ge=0.0, le=1e6, description="jumprelu: L0 coefficient.")] = 0.5
    dead_after: Annotated[
        Count,
        Field(description="topk: a feature silent for this many training tokens is dead and gets the AuxK loss."),
    ] = 16_384
    seed: Annotated[Seed, Field(description="Random seed (initialisation and shuffling).")] = 0
    seq_len: Annotated[int, Field(ge=1, le=1_000_000, description="Tokens per packed sequence.")] = 128
    name: Annotated[
        str | None,
        Field(min_length=1, max_length=200, description="Name in the store (default: hook-architecture-width)."),
    ] = None
    evaluate_tokens: Annotated[
        int,
        Field(
            ge=0,
            le=100_000_000,
            description="Held-out tokens for L0, variance explained, dead/dense features (the workbench "
            "proposes 4,096).",
        ),
        Cli(("--eval-tokens",)),
    ] = 32768


class SaeTrainOptions(TrainSizes):
    activations: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=2000,
            description="Read the rows from a harvest (glasslab harvest: its --out) instead of the model.",
        ),
    ] = None
    cluster: ClusterAddress = None
    workers: Workers = None
    worker_gpus: WorkerGpus = 0.0
    save_to: Annotated[
        str | None, Field(min_length=1, max_length=1000, description="Save into this folder instead of the store.")
    ] = None
    fresh: Annotated[
        bool, Field(description="Discard a checkpoint of this name and start over."), Cli(("--fresh",))
    ] = False
    evaluate_loss_tokens: Annotated[
        int,
        Field(ge=0, le=10_000_000, description="Held-out tokens for the loss-recovered figures (4 full passes)."),
        Cli(("--eval-loss-tokens",)),
    ] = 2048
    on_cluster: Annotated[
        bool,
        Field(description="Train on the Ray cluster the server was started with (glasslab serve --cluster)."),
    ] = False


def train_config(
    hook: str | None,
    layer: int | None,
    *,
    corpus: str = "builtin",
    architecture: str = "topk",
    expansion: int = 8,
    k: int = 32,
    tokens: int = 2_000_000,
    harvest_tokens: int | None = None,
    buffer_tokens: int = 500_000,
    batch_size: int = 4096,
    lr: float = 1e-3,
    l1: float = 5.0,
    l0: float = 0.5,
    dead_after: int = 16_384,
    seed: int = 0,
    seq_len: int = 128,
) -> TrainConfig:
    """The trainer's settings for the options: the hook named, or the layer's resid_post."""
    if (hook is None) == (layer is None):
        raise InputError("give a hook (--hook blocks.6.resid_post) or a layer (--layer 6: its resid_post), not both")
    return TrainConfig(
        hook=hook if hook is not None else f"blocks.{layer}.resid_post",
        architecture=architecture,
        expansion=expansion,
        k=k,
        tokens=tokens,
        harvest_tokens=harvest_tokens,
        buffer_tokens=buffer_tokens,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        corpus=corpus,
        seq_len=seq_len,
        l1_coefficient=l1,
        l0_coefficient=l0,
        dead_after_tokens=dead_after,
    )


def train(
    model: Model,
    *,
    hook: str | None = None,
    layer: int | None = None,
    corpus: str = "builtin",
    architecture: str = "topk",
    expansion: int = 8,
    k: int = 32,
    tokens: int = 2_000_000,
    harvest_tokens: int | None = None,
    buffer_tokens: int = 500_000,
    batch_size: int = 4096,
    lr: float = 1e-3,
    l1: float = 5.0,
    l0: float = 0.5,
    dead_after: int = 16_384,
    seed: int = 0,
    seq_len: int = 128,
    name: str | None = None,
    evaluate_tokens: int = 32768,
    activations: str | None = None,
    cluster: str | None = None,
    workers: int | None = None,
    worker_gpus: float = 0.0,
    save_to: str | None = None,
    fresh: bool = False,
    evaluate_loss_tokens: int = 2048,
    command: str | None = None,
) -> TrainedSAE:
    """``train_sae`` with the settings as options (resumable: an interrupted training keeps a checkpoint), then
    its evaluation; ``command`` is recorded with the SAE (the command line that ran). ``activations`` reads
    the rows from a harvest instead of the model; ``cluster`` trains it data-parallel on Ray (``workers`` must
    divide ``batch_size``)."""
    config = train_config(
        hook,
        layer,
        corpus=corpus,
        architecture=architecture,
        expansion=expansion,
        k=k,
        tokens=tokens,
        harvest_tokens=harvest_tokens,
        buffer_tokens=buffer_tokens,
        batch_size=batch_size,
        lr=lr,
        l1=l1,
        l0=l0,
        dead_after=dead_after,
        seed=seed,
        seq_len=seq_len,
    )
    model.hook_spec(config.hook)  # a wrong hook fails before anything is read
    config = replace(config, activations=activations)
    evaluation = dict(evaluate_tokens=evaluate_tokens, evaluate_loss_tokens=evaluate_loss_tokens)
    cluster_options = dict(cluster=cluster, workers=workers, worker_gpus=worker_gpus)
    return train_sae(
        model, config, name=name, out=save_to, fresh=fresh, command=command, **evaluation, **cluster_options
    )


def estimate(
    model: Model,
    *,
    hook: str | None = None,
    layer: int | None = None,
    corpus: str = "builtin",
    architecture: str = "topk",
    expansion: int = 8,
    k: int = 32,
    tokens: int = 2_000_000,
    harvest_tokens: int | None = None,
    buffer_tokens: int = 500_000,
    batch_size: int = 4096,
    lr: float = 1e-3,
    l1: float = 5.0,
    l0: float = 0.5,
    dead_after: int = 16_384,
    seed: int = 0,
    seq_len: int = 128,
    evaluate_tokens: int = 32768,
) -> TrainingEstimate:
    """How long ``train`` would take here: one batch of activations and a few steps of the real trainer."""
    config = train_config(
        hook,
        layer,
        corpus=corpus,
        architecture=architecture,
        expansion=expansion,
        k=k,
        tokens=tokens,
        harvest_tokens=harvest_tokens,
        buffer_tokens=buffer_tokens,
        batch_size=batch_size,
        lr=lr,
        l1=l1,
        l0=l0,
        dead_after=dead_after,
        seed=seed,
        seq_len=seq_len,
    )
    model.hook_spec(config.hook)  # a wrong hook fails before anything is read
    return estimate_training(model, config, evaluate_tokens=evaluate_tokens)


GROUP = "sae"
# The workbench trains a TopK SAE on a layer's resid_post from the built-in text, in memory: a request gives
# the sizes only, within these bounds; the rest are the command line's.
LOCAL = frozenset({"hook", "corpus", "architecture", "buffer_tokens", "lr", "l1", "l0", "dead_after", "seq_len"})
HTTP_SIZES = (
    ("expansion", Annotated[int, Field(ge=1, le=64)]),
    ("k", Annotated[int, Field(ge=1, le=512)]),
    ("tokens", Annotated[int, Field(ge=64, le=MAX_TRAIN_TOKENS)]),
    ("harvest_tokens", Annotated[int, Field(ge=64, le=MAX_HARVEST_TOKENS)] | None),
    ("batch_size", Annotated[int, Field(ge=64, le=16_384)]),
    ("evaluate_tokens", Annotated[int, Field(ge=0, le=MAX_EVALUATE_TOKENS)]),
    ("name", VectorName | None),  # a plain name, as for vectors
)
OPERATIONS = [
    OperationSpec(
        "sae-train",
        SaeTrainOptions,
        train,
        TrainedSAE,
        "Train an SAE on a hook from a corpus (resumable: Ctrl-C keeps a checkpoint), then evaluate it.",
        GROUP,
        long=True,
        local_only=LOCAL
        | {"save_to", "fresh", "evaluate_loss_tokens", "activations", "cluster", "workers", "worker_gpus"},
        http_types=HTTP_SIZES,
        python_only=frozenset({"command"}),
        # A request may only ask for the cluster the server's operator chose (a request naming an address would
        # steer the server); the CLI and Python name their cluster themselves (cluster, workers, worker_gpus).
        server_only=frozenset({"on_cluster"}),
    ),
    OperationSpec(
        "sae-train-estimate",
        TrainSizes,
        estimate,
        TrainingEstimate,
        "How long training an SAE would take here (measured: a probe of the real trainer).",
        GROUP,
        long=True,
        server_only=frozenset({"name"}),  # the plan the workbench shows names the SAE it would train
        local_only=LOCAL,
        http_types=HTTP_SIZES,
    ),
]
