"""SAE operations that write files beside an SAE: precomputing every dashboard and label of one trained later.

The server runs it as a job off the model worker, on store SAEs only (app/sae_precompute.py); locally an SAE
saved in a folder may be named too, and another corpus scanned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import Field, StringConstraints

from ..dictionaries.loading import origin_of
from ..errors import InputError
from ..methods.features.labels import precompute_features
from ..model.model import Model
from .features import AnyModel, SaeName, open_sae
from .options import Cli, Options
from .spec import OperationSpec


@dataclass(frozen=True)
class Precomputed:
    """What ``precompute`` wrote (``Described.summary``), with the SAE as named and its folder."""

    summary: dict

    def to_dict(self) -> dict:
        return dict(self.summary)


class PrecomputeOptions(Options):
    sae: Annotated[
        str,
        StringConstraints(min_length=1, max_length=500),
        Field(description="An SAE trained into the store (store:NAME); locally also a folder."),
        Cli(("--sae", "-s")),
    ]
    sequences: Annotated[
        int, Field(ge=1, le=8192, description="Train-split sequences scanned for contexts and labels.")
    ] = 1024
    held_out_sequences: Annotated[
        int,
        Field(ge=1, le=2048, description="Test-split sequences on which each label's detection score is measured."),
    ] = 256
    corpus: Annotated[
        str | None,
        Field(max_length=500, description="Corpus to scan (default: the SAE's training corpus, else builtin)."),
    ] = None
    any_model: AnyModel = False


def precompute(
    model: Model,
    *,
    sae: str,
    sequences: int = 1024,
    held_out_sequences: int = 256,
    corpus: str | None = None,
    any_model: bool = False,
) -> Precomputed:
    """Write labels.json (automatic labels with detection scores) and every feature's dashboard beside an SAE
    saved in a folder of yours (the store or a path), so its dashboards open at once."""
    if sae.startswith("default:"):
        raise InputError("shipped SAEs come with their dashboards and labels precomputed; nothing to do")
    chosen = open_sae(model, sae, any_model)
    origin = origin_of(chosen)
    if origin.folder is None or origin.release is not None:
        raise InputError(f"'{sae}' is not saved in a folder of yours (store:NAME or a path); nothing was written")
    options = {"corpus": corpus} if corpus else {}
    described = precompute_features(
        model, chosen, origin.folder, sequences=sequences, held_out_sequences=held_out_sequences, **options
    )
    return Precomputed({**described.summary(), "sae": sae, "folder": str(origin.folder)})


GROUP = "sae"
OPERATIONS = [
    OperationSpec(
        "sae-precompute",
        PrecomputeOptions,
        precompute,
        Precomputed,
        "Precompute every dashboard and automatic label (with detection scores) of an SAE trained into the store.",
        GROUP,
        long=True,
        local_only=frozenset({"corpus", "any_model"}),
        http_types=(("sae", SaeName),),
    ),
]
