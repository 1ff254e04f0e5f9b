"""The attribution-graph endpoints: ``POST /api/graph`` (the declared operation), ``graph-intervene`` (set
features of that graph and compare), ``graph-neuronpedia`` (the graph as Neuronpedia's viewer reads it) and
``transcoder-sets`` (the sets shipped for the loaded model, then those in the store).

The transcoder set's files are in every result's cache key, so a set saved again under the same name is never
answered from a stale cached graph. A request names a set by its store name only (the body's type refuses
paths). The graph object itself (with the full adjacency an intervention and the export read) is kept for the
last few graphs, keyed the same way, so intervening on the graph just drawn does not build it again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from ..dictionaries.hub import same_model
from ..dictionaries.transcoder_catalog import set_folder, shipped_summary, shipped_transcoders
from ..dictionaries.transcoder_set import TranscoderSet
from ..errors import InputError
from ..methods.graphs import AttributionGraph
from ..methods.graphs.export import to_neuronpedia
from ..methods.graphs.intervene import intervene_on_graph
from ..operations import OPERATIONS as DECLARED
from ..operations.graphs import GRAPH_SETTINGS, traced
from ..operations.options import Options
from ..store import TRANSCODERS, ArtifactNotFound, list_artifacts
from .ops import Ctx, NotFound, Operation, declared, stamp
from .state import ModelState

SPEC = DECLARED["graph"]
KEPT_GRAPHS = 2  # a graph's adjacency is square in its nodes: tens of MB for a real model's prompt
_graphs: OrderedDict[tuple, tuple[AttributionGraph, TranscoderSet]] = OrderedDict()
_graphs_lock = threading.Lock()


def transcoder_reads(state: ModelState, body: Options) -> tuple:
    """The set a request reads and its files (description and manifest) as they are now."""
    try:
        folder = set_folder(body.transcoders, state.model)
    except InputError:
        return body.transcoders, ("missing",)  # the operation itself says what is wrong
    return body.transcoders, stamp(folder)


def built(ctx: Ctx, body: Options) -> tuple[AttributionGraph, TranscoderSet]:
    """The graph the body's settings describe and its transcoder set: kept from an earlier request when the
    model, the settings and the set's files are the same, else built (and kept)."""
    ctx.prompt(body.prompt)
    settings = body.model_dump(include=GRAPH_SETTINGS)
    key = (ctx.model.key, repr(sorted(settings.items())), transcoder_reads(ctx.state, body))
    with _graphs_lock:
        if key in _graphs:
            _graphs.move_to_end(key)
            return _graphs[key]
    try:
        found = traced(ctx.model, settings.pop("prompt"), settings.pop("transcoders"), **settings)
    except ArtifactNotFound as exc:  # a name the store does not hold: 404, as for an unknown SAE
        raise NotFound(str(exc)) from None
    with _graphs_lock:
        _graphs[key] = found
        while len(_graphs) > KEPT_GRAPHS:
            _graphs.popitem(last=False)
    return found


def graph_op(ctx: Ctx, body: Options) -> dict:
    return built(ctx, body)[0].to_dict()


def intervene_op(ctx: Ctx, body: Options) -> dict:
    graph, transcoders = built(ctx, body)
    return intervene_on_graph(ctx.model, graph, transcoders, dict(body.changes or {})).to_dict()


def neuronpedia_op(ctx: Ctx, body: Options) -> dict:
    return to_neuronpedia(built(ctx, body)[0])


class NoOptions(Options):
    """An empty body: the sets listed are those of the loaded model."""


def transcoder_sets(ctx: Ctx, body: Options) -> dict:
    """Each set with its summary (architecture, layers, width) as saved, newest files included."""
    sets = _shipped_sets(ctx.model) + [artifact.to_dict() for artifact in list_artifacts(TRANSCODERS, ctx.model.key)]
    return {"kind": "transcoder_sets", "model": ctx.model.name, "n_layers": ctx.model.n_layers, "sets": sets}


def _shipped_sets(model) -> list[dict]:
    """The sets shipped for ``model``, named as requests name them (``default:NAME``)."""
    found = []
    for name, folder, made_for in shipped_transcoders():
        if made_for and same_model(made_for, model.name):
            described = {"kind": TRANSCODERS.name, "name": f"default:{name}", "created": None, "bytes": None}
            found.append({**described, "glasslab_version": None, "summary": shipped_summary(folder)})
    return found


OPERATIONS = [
    declared(SPEC, graph_op, reads=transcoder_reads),
    declared(DECLARED["graph-intervene"], intervene_op, reads=transcoder_reads),
    Operation(
        "graph-neuronpedia",
        SPEC.http_options,
        neuronpedia_op,
        "The attribution graph as the JSON Neuronpedia's and circuit-tracer's graph viewers read.",
        SPEC.group,
        long=True,
        reads=transcoder_reads,
    ),
    # Sets are trained and deleted while the server runs: listed afresh on every request.
    Operation(
        "transcoder-sets",
        NoOptions,
        transcoder_sets,
        "The transcoder sets saved in the store for the loaded model (what POST /api/graph can name).",
        SPEC.group,
        deterministic=lambda body: False,
    ),
]
