"""``POST /api/sae-search``: find the loaded model's SAE features by words or meaning over their labels.

The SAE is named as everywhere else (a name from ``GET /api/saes``, never a path); the result is cached on
the SAE's files, so relabelling an SAE gives a fresh answer.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from ..methods.features.search import MAX_QUERY_CHARS, search_features
from .ops import Ctx, Operation
from .saes import load_listed, sae_reads
from .schemas import MAX_K, Body, SaeName


class SaeSearchBody(Body):
    sae: SaeName | None = None  # a name from GET /api/saes; default the first on disk
    query: Annotated[str, StringConstraints(min_length=1, max_length=MAX_QUERY_CHARS)]
    top: int = Field(20, ge=1, le=MAX_K)
    exclude_dense: bool = False


def search_op(ctx: Ctx, body: SaeSearchBody) -> dict:
    sae, name = load_listed(ctx.model, body.sae)
    result = search_features(ctx.model, sae, body.query, top=body.top, exclude_dense=body.exclude_dense)
    return {**result.to_dict(), "sae_name": name}


OPERATIONS = [
    Operation(
        "sae-search",
        SaeSearchBody,
        search_op,
        "Find an SAE's features by words or meaning over their labels (offline).",
        "sae",
        reads=sae_reads,
    ),
]
