"""``POST /api/sae-search``: find the loaded model's SAE features by words or meaning over their labels.

The SAE is named as everywhere else (a name from ``GET /api/saes``, never a path); the result is cached on
the SAE's files, so relabelling an SAE gives a fresh answer.
"""

from __future__ import annotations

from ..methods.features.search import search_features
from ..operations import OPERATIONS as DECLARED
from ..operations.options import Options
from .ops import Ctx, declared
from .saes import load_listed, sae_reads


def search_op(ctx: Ctx, body: Options) -> dict:
    sae, name = load_listed(ctx.model, body.sae)
    result = search_features(ctx.model, sae, body.query, top=body.top, exclude_dense=body.exclude_dense)
    return {**result.to_dict(), "sae_name": name}


OPERATIONS = [declared(DECLARED["sae-search"], search_op, reads=sae_reads)]
