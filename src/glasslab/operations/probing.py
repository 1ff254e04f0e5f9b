"""Concept erasure: fit LEACE at one hook and judge it by probes before and after, and by the model's loss."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field

from ..methods.probing import BUILTIN, erase
from ..methods.probing.erasure import NEUTRAL_TEXTS, Erasure
from ..model.model import Model
from .options import MAX_BATCH, MAX_LIST, MAX_SEEDS, Cli, Index, Options, Position
from .spec import OperationSpec

Builtin = Literal[tuple(BUILTIN)]  # type: ignore[valid-type]
ProbeKind = Literal["logistic", "ridge"]


class EraseOptions(Options):
    dataset: Annotated[
        str,
        Field(
            min_length=1,
            max_length=1000,
            description="A built-in dataset (number, city, sentiment) or a .csv/.jsonl file with text and label "
            "columns (optional: position = last / a token index / a word; group = the word type).",
        ),
        Cli(argument=True),
    ]
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
    strength: Annotated[
        float, Field(gt=0.0, le=1e6, description="L2 penalty of the probe (on standardised activations).")
    ] = 1.0
    n_folds: Annotated[int, Field(ge=2, le=20, description="Cross-validation folds."), Cli(("--folds",))] = 5
    seed: Annotated[int, Field(ge=0, le=MAX_SEEDS, description="Seed of the folds and the control task.")] = 0
    downstream: Annotated[
        bool, Field(description="Also probe every later layer with the eraser in the forward pass.")
    ] = True
    loss: Annotated[bool, Field(description="Also measure the loss change on a few neutral texts.")] = True
    batch_size: Annotated[int, Field(ge=1, le=MAX_BATCH, description="Examples per forward pass.")] = 32


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
