"""The tuned lens: train it, describe the stored one, and measure both lenses' KL to the model's output."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ..methods.lenses.tuned_lens import LensKL, TunedLens, lens_kl, load_tuned_lens, train_tuned_lens
from ..model.model import Model
from .options import MAX_BATCH, Cli, Options
from .scale import ClusterAddress, Workers
from .spec import OperationSpec

Corpus = Annotated[
    str,
    Field(
        max_length=1000,
        description="'builtin' (offline English text), a .txt/.jsonl file or folder, or hf:NAME[:CONFIG].",
    ),
]
LensFolder = Annotated[
    str | None,
    Field(max_length=1000, description="A tuned-lens folder (default: the one stored for the model)."),
    Cli(("--lens",)),
]
SeqLen = Annotated[int, Field(ge=2, le=2048, description="Tokens per sequence.")]


class TrainOptions(Options):
    corpus: Corpus = "builtin"
    tokens: Annotated[int, Field(ge=1, le=100_000_000, description="Training tokens for the least-squares fit.")] = (
        200_000
    )
    seq_len: Annotated[int, Field(ge=2, le=2048, description="Tokens per training sequence.")] = 128
    batch_size: Annotated[int, Field(ge=1, le=MAX_BATCH, description="Sequences per forward pass.")] = 8
    ridge: Annotated[
        float, Field(ge=0.0, le=1e6, description="Ridge strength, relative to the features' mean square.")
    ] = 1e-3
    kl_steps: Annotated[
        int,
        Field(
            ge=0,
            le=1_000_000,
            description="Then refine this many steps on the paper's KL objective, in this process (slow on a CPU: "
            "minutes per step).",
        ),
    ] = 0
    kl_lr: Annotated[float, Field(gt=0.0, le=1.0, description="Adam learning rate of the KL refinement.")] = 1e-3
    fresh: Annotated[bool, Field(description="Ignore the stored checkpoint and start over.")] = False
    cluster: ClusterAddress = None
    workers: Workers = None


class InfoOptions(Options):
    lens: LensFolder = None


class LensKLOptions(Options):
    corpus: Corpus = "builtin"
    split: Annotated[
        Literal["test", "train", "all"], Field(description="test (held out from training), train, or all.")
    ] = "test"
    tokens: Annotated[int, Field(ge=1, le=1_000_000, description="About how many tokens to average over.")] = 4096
    seq_len: SeqLen = 128
    logit_only: Annotated[bool, Field(description="Skip the tuned lens.")] = False
    lens: LensFolder = None


def train_lens(
    model: Model,
    *,
    corpus: str = "builtin",
    tokens: int = 200_000,
    seq_len: int = 128,
    batch_size: int = 8,
    ridge: float = 1e-3,
    kl_steps: int = 0,
    kl_lr: float = 1e-3,
    fresh: bool = False,
    cluster: str | None = None,
    workers: int | None = None,
) -> TunedLens:
    """``train_tuned_lens``, resuming the stored checkpoint unless ``fresh``; ``cluster`` sums on Ray."""
    return train_tuned_lens(
        model,
        corpus,
        tokens=tokens,
        seq_len=seq_len,
        batch_size=batch_size,
        ridge=ridge,
        kl_steps=kl_steps,
        kl_lr=kl_lr,
        resume=not fresh,
        cluster=cluster,
        workers=workers,
    )


def describe_lens(model: Model, *, lens: str | None = None) -> TunedLens:
    """The stored tuned lens (or the one in the folder ``lens``), checked against the model."""
    return load_tuned_lens(model, lens)


def measure_lenses(
    model: Model,
    *,
    corpus: str = "builtin",
    split: Literal["test", "train", "all"] = "test",
    tokens: int = 4096,
    seq_len: int = 128,
    logit_only: bool = False,
    lens: str | None = None,
) -> LensKL:
    """``lens_kl`` of the logit lens and (unless ``logit_only``) the stored or named tuned lens."""
    translators = None if logit_only else load_tuned_lens(model, lens)
    return lens_kl(
        model, corpus, split=None if split == "all" else split, tokens=tokens, seq_len=seq_len, lens=translators
    )


GROUP = "lenses"
OPERATIONS = [
    OperationSpec(
        "tuned-lens-train",
        TrainOptions,
        train_lens,
        TunedLens,
        "Fit a tuned lens on a corpus's train split and save it to the store.",
        GROUP,
        local_only=frozenset({"corpus", "cluster", "workers"}),
        long=True,
        # It trains for minutes and writes the model's stored lens: the server has no plan for that (SAE
        # training has one), so no request may start it.
        http=False,
    ),
    OperationSpec(
        "tuned-lens-info",
        InfoOptions,
        describe_lens,
        TunedLens,
        "Describe the stored tuned lens: where it is and how it was trained.",
        GROUP,
        local_only=frozenset({"lens"}),
        # Its answer is the lens's folder on this machine, which a client must not learn.
        http=False,
    ),
    OperationSpec(
        "lens-kl",
        LensKLOptions,
        measure_lenses,
        LensKL,
        "Per-layer KL(model output || lens) of the logit lens and the tuned lens on held-out text, in nats.",
        GROUP,
        local_only=frozenset({"corpus", "lens"}),
        long=True,
    ),
]
