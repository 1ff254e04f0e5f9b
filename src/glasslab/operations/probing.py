"""Probing and concept erasure: linear probes at every layer (optionally saved as a steering vector), and
LEACE at one hook judged by probes before and after and by the model's loss."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field

from ..errors import InputError
from ..methods.probing import BUILTIN, erase, harvest, load_probe_dataset, probe_hooks, probe_vector
from ..methods.probing import probe as probe_layers  # the option ``probe`` would shadow the name
from ..methods.probing.erasure import NEUTRAL_TEXTS, Erasure
from ..methods.probing.result import Probing
from ..model.model import Model
from .options import MAX_BATCH, MAX_LIST, MAX_SEEDS, Cli, Index, Options, Position
from .spec import OperationSpec

Builtin = Literal[tuple(BUILTIN)]  # type: ignore[valid-type]
ProbeKind = Literal["logistic", "ridge"]


Dataset = Annotated[
    str,
    Field(
        min_length=1,
        max_length=1000,
        description="A built-in dataset (number, city, sentiment) or a .csv/.jsonl file with text and label "
        "columns (optional: position = last / a token index / a word; group = the word type).",
    ),
    Cli(argument=True),
]
ProbeStrength = Annotated[
    float, Field(gt=0.0, le=1e6, description="L2 penalty of the probe (on standardised activations).")
]
Folds = Annotated[int, Field(ge=2, le=20, description="Cross-validation folds."), Cli(("--folds",))]
ProbeSeed = Annotated[int, Field(ge=0, le=MAX_SEEDS, description="Seed of the folds and the control task.")]
BatchSize = Annotated[int, Field(ge=1, le=MAX_BATCH, description="Examples per forward pass.")]


def parse_layers(text: str, flag: str) -> list[int] | None:
    """'0,4,8', '2-10', '2-10,15' or 'all' -> layer numbers (None: all); the model checks the range."""
    if text.strip() in ("", "all"):
        return None
    layers: list[int] = []
    for piece in text.split(","):
        low, dash, high = piece.strip().partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise InputError(f"--{flag} takes numbers and ranges like 0,4,8 or 2-10; got '{text}'")
        layers += list(range(int(low), int(high) + 1)) if dash else [int(low)]
    return sorted(set(layers))


class ProbeOptions(Options):
    dataset: Dataset
    hook: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=200)]] | None,
        Field(
            max_length=64,
            description="A block site probed at every layer (resid_post, mlp.post, attn.z...) or hook names "
            "/ wildcards (repeatable). Default: resid_post.",
        ),
    ] = None
    layers: Annotated[
        list[Index] | None,
        Field(max_length=MAX_LIST, description="Only these layers, e.g. 0,4,8 or 2-10."),
        Cli(parse=parse_layers, whole=True),
    ] = None
    probe: Annotated[ProbeKind, Field(description="logistic or ridge.")] = "logistic"
    strength: ProbeStrength = 1.0
    n_folds: Folds = 5
    seed: ProbeSeed = 0
    batch_size: BatchSize = 32
    save_vector: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=1000,
            description="Save the probe's direction at --vector-layer as a steering vector (name or folder).",
        ),
    ] = None
    vector_layer: Annotated[Index | None, Field(description="Layer whose resid_post probe becomes the vector.")] = None
    positive: Annotated[
        str | None, Field(max_length=200, description="The class the vector points to (default: the dataset's).")
    ] = None


def probe_dataset(
    model: Model,
    dataset: str,
    *,
    hook: Sequence[str] | None = None,
    layers: Sequence[int] | None = None,
    probe: ProbeKind = "logistic",
    strength: float = 1.0,
    n_folds: int = 5,
    seed: int = 0,
    batch_size: int = 32,
    save_vector: str | None = None,
    vector_layer: int | None = None,
    positive: str | None = None,
) -> Probing:
    """``probe`` at every layer, and with ``save_vector`` the probe at ``vector_layer``'s resid_post saved as a
    steering vector (one forward pass reads both); the result's ``saved_vector`` says where."""
    if (save_vector is None) != (vector_layer is None):
        raise InputError("give --save-vector NAME and --vector-layer L together")
    data = load_probe_dataset(dataset)
    hooks = probe_hooks(model, hook or "resid_post", layers)
    wanted = set(hooks)
    if vector_layer is not None:
        if not 0 <= vector_layer < model.n_layers:
            raise InputError(f"--vector-layer must be in 0..{model.n_layers - 1}, got {vector_layer}")
        wanted.add(f"blocks.{vector_layer}.resid_post")
    acts = harvest(model, data, [h for h in model.hooks() if h in wanted], batch_size=batch_size)
    options = dict(probe=probe, strength=strength)
    result = probe_layers(model, data, hook=hooks, n_folds=n_folds, seed=seed, activations=acts, **options)
    if save_vector is None:
        return result
    vector = probe_vector(model, data, layer=vector_layer, positive=positive, activations=acts, **options)
    return dataclasses.replace(result, saved_vector=str(vector.save(save_vector).path))


def saved_vector_note(result: Probing, options: ProbeOptions) -> str | None:
    """Where the probe's direction was saved, and how to steer with it."""
    if result.saved_vector is None:
        return None
    return (
        f"saved the probe direction at blocks.{options.vector_layer}.resid_post to {result.saved_vector}; use it "
        f"with: glasslab steer PROMPT --vector {options.save_vector}"
    )


class EraseOptions(Options):
    dataset: Dataset
    layer: Annotated[Index | None, Field(description="Erase at blocks.LAYER.SITE.")] = None
    hook: Annotated[str | None, Field(max_length=200, description="Or at this hook, e.g. blocks.6.resid_post.")] = None
    site: Annotated[str, Field(max_length=100, description="The site used with --layer.")] = "resid_post"
    position: Annotated[
        list[Position] | None,
        Field(
            max_length=MAX_LIST,
            description="Erase only at these positions in the model (-1: last). Default: every position.",
        ),
        Cli(("--position", "-p")),
    ] = None
    probe: Annotated[ProbeKind, Field(description="logistic or ridge.")] = "logistic"
    strength: ProbeStrength = 1.0
    n_folds: Folds = 5
    seed: ProbeSeed = 0
    downstream: Annotated[
        bool, Field(description="Also probe every later layer with the eraser in the forward pass.")
    ] = True
    loss: Annotated[bool, Field(description="Also measure the loss change on a few neutral texts.")] = True
    batch_size: BatchSize = 32


def erase_concept(
    model: Model,
    dataset: str,
    *,
    layer: int | None = None,
    hook: str | None = None,
    site: str = "resid_post",
    position: Sequence[int] | None = None,
    probe: ProbeKind = "logistic",
    strength: float = 1.0,
    n_folds: int = 5,
    seed: int = 0,
    downstream: bool = True,
    loss: bool = True,
    batch_size: int = 32,
) -> Erasure:
    """``erase``, with the neutral-text loss check when ``loss``."""
    return erase(
        model,
        dataset,
        layer=layer,
        hook=hook,
        site=site,
        position=position or None,
        probe=probe,
        strength=strength,
        n_folds=n_folds,
        seed=seed,
        downstream=downstream,
        neutral_texts=NEUTRAL_TEXTS if loss else None,
        batch_size=batch_size,
    )


OPERATIONS = [
    OperationSpec(
        "probe",
        ProbeOptions,
        probe_dataset,
        Probing,
        "Train linear probes for a labelled dataset at every layer, with control tasks and selectivity.",
        "probing",
        # A request names a built-in dataset only, and never saves a vector into this machine's store.
        http_types=(("dataset", Builtin),),
        local_only=frozenset({"save_vector", "vector_layer", "positive"}),
        long=True,
    ),
    OperationSpec(
        "erase",
        EraseOptions,
        erase_concept,
        Erasure,
        "Erase a concept with LEACE at one hook and report probe accuracy before and after, and the cost.",
        "probing",
        # A request names a built-in dataset only, never a file on the server.
        http_types=(("dataset", Builtin),),
        long=True,
    ),
]
