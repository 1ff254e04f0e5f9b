"""The attribution-graph endpoint (``POST /api/graph``): the declared operation, with the transcoder set's
files in the result's cache key, so a set saved again under the same name is never answered from a stale
cached graph. A request names a set by its store name only (the body's type refuses paths)."""

from __future__ import annotations

from ..operations import OPERATIONS as DECLARED
from ..operations.options import Options
from ..store import TRANSCODERS, ArtifactNotFound, location
from .ops import Ctx, NotFound, declared, stamp
from .state import ModelState

SPEC = DECLARED["graph"]


def transcoder_reads(state: ModelState, body: Options) -> tuple:
    """The set a request reads and its files (description and manifest) as they are now."""
    return body.transcoders, stamp(location(TRANSCODERS, state.model.key, body.transcoders))


def graph_op(ctx: Ctx, body: Options) -> dict:
    ctx.prompt(body.prompt)
    try:
        return SPEC(ctx.model, body).to_dict()
    except ArtifactNotFound as exc:  # a name the store does not hold: 404, as for an unknown SAE
        raise NotFound(str(exc)) from None


OPERATIONS = [declared(SPEC, graph_op, reads=transcoder_reads)]
