"""Attribution graphs: how a prompt's next token is computed through transcoder features (issue 20), and
checking a graph by intervening on its features (``graph-intervene``).

A transcoder set is named as ``open_transcoders`` reads it: ``default`` (shipped), a name in the store for the
loaded model, or
locally a folder. A request names only a store name (``http_types``), never a folder on the server.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, StringConstraints

from ..dictionaries.transcoder_catalog import open_transcoders
from ..errors import InputError
from ..methods.graphs import AttributionGraph, attribution_graph
from ..methods.graphs.export import to_neuronpedia
from ..methods.graphs.intervene import GraphIntervention, intervene_on_graph
from ..methods.graphs.replacement import Transcoders
from ..model.model import Model
from ..store import NAME_PATTERN
from .options import MAX_BATCH, MAX_K, MAX_LIST, Cli, PromptOptions, Token
from .spec import OperationSpec

MAX_FEATURE_NODES = 16_384  # the adjacency is square in the node count: 16k nodes are a 1 GiB float32 matrix
# Over HTTP: a store name, or a shipped set (``default``, ``default:NAME``); never a path.
TranscodersName = Annotated[str, StringConstraints(pattern=rf"^default:{NAME_PATTERN[1:-1]}$|{NAME_PATTERN}")]
Share = Annotated[float, Field(gt=0.0, le=1.0)]


class GraphSettings(PromptOptions):
    """What a graph is built from: the options of ``attribution_graph`` with the set by name."""

    transcoders: Annotated[
        str,
        StringConstraints(min_length=1, max_length=500),
        Field(
            description="The transcoder set: 'default' (shipped for the offline default model), its name in the "
            "store for this model; locally also a folder in any published layout."
        ),
        Cli(("--transcoders", "-t")),
    ] = "default"
    target: Annotated[
        Token | None,
        Field(description="Explain this one token (e.g. ' Paris') instead of the top logits."),
    ] = None
    contrast: Annotated[
        Token | None,
        Field(description="Explain the logit difference target - contrast (e.g. ' London'); needs target."),
    ] = None
    max_logits: Annotated[
        int, Field(ge=1, le=MAX_K, description="Without target: at most this many top logits are the targets.")
    ] = 10
    logit_probability: Annotated[
        Share, Field(description="Without target: the top logits whose probabilities add up to this share.")
    ] = 0.95
    max_feature_nodes: Annotated[
        int,
        Field(
            ge=1,
            le=MAX_FEATURE_NODES,
            description="At most this many active features become nodes (the most influential first).",
        ),
    ] = 4096
    node_threshold: Annotated[
        Share, Field(description="Pruning keeps the features and error nodes carrying this share of the influence.")
    ] = 0.8
    edge_threshold: Annotated[
        Share, Field(description="Pruning keeps the edges carrying this share of the influence.")
    ] = 0.98
    batch_size: Annotated[
        int, Field(ge=1, le=MAX_BATCH, description="Rows per backward pass (memory against speed).")
    ] = 64


GRAPH_SETTINGS = frozenset(GraphSettings.model_fields)  # what identifies a graph (the server's cache key)


class GraphOptions(GraphSettings):
    neuronpedia: Annotated[
        str | None,
        Field(
            max_length=1000,
            description="Also write the graph to this file as the JSON Neuronpedia's and circuit-tracer's viewers "
            "read.",
        ),
    ] = None


def build_graph(
    model: Model,
    prompt: str,
    *,
    transcoders: str = "default",
    target: str | None = None,
    contrast: str | None = None,
    max_logits: int = 10,
    logit_probability: float = 0.95,
    max_feature_nodes: int = 4096,
    node_threshold: float = 0.8,
    edge_threshold: float = 0.98,
    batch_size: int = 64,
    neuronpedia: str | None = None,
) -> AttributionGraph:
    """``attribution_graph`` with the transcoder set loaded by name or folder (checked against ``model``), and
    the graph also written for Neuronpedia's viewer when ``neuronpedia`` names a file."""
    destination = _writable(neuronpedia) if neuronpedia else None
    settings = dict(target=target, contrast=contrast, max_logits=max_logits, logit_probability=logit_probability)
    pruning = dict(max_feature_nodes=max_feature_nodes, node_threshold=node_threshold, edge_threshold=edge_threshold)
    graph, _ = traced(model, prompt, transcoders, batch_size=batch_size, **settings, **pruning)
    if destination is not None:
        destination.write_text(json.dumps(to_neuronpedia(graph), indent=2, ensure_ascii=False), encoding="utf-8")
    return graph


def traced(model: Model, prompt: str, transcoders: str, **settings: Any) -> tuple[AttributionGraph, Transcoders]:
    """The graph of ``prompt`` through the set named ``transcoders`` (the rest of ``GraphSettings`` as keywords),
    and the set itself: an intervention on the graph runs through the same transcoders."""
    loaded = open_transcoders(transcoders, model)
    return attribution_graph(model, prompt, loaded, transcoders_name=transcoders, **settings), loaded


def intervene_graph(
    model: Model,
    prompt: str,
    *,
    transcoders: str = "default",
    target: str | None = None,
    contrast: str | None = None,
    max_logits: int = 10,
    logit_probability: float = 0.95,
    max_feature_nodes: int = 4096,
    node_threshold: float = 0.8,
    edge_threshold: float = 0.98,
    batch_size: int = 64,
    changes: dict[str, float] | None = None,
) -> GraphIntervention:
    """Build the graph as ``graph`` does, set each feature node in ``changes`` to its new activation, and compare
    what the graph predicts for each target with the frozen replacement and the real model."""
    settings = dict(target=target, contrast=contrast, max_logits=max_logits, logit_probability=logit_probability)
    pruning = dict(max_feature_nodes=max_feature_nodes, node_threshold=node_threshold, edge_threshold=edge_threshold)
    graph, loaded = traced(model, prompt, transcoders, batch_size=batch_size, **settings, **pruning)
    return intervene_on_graph(model, graph, loaded, dict(changes or {}))


def _writable(path: str) -> Path:
    """The file to write, refused before minutes of work if its folder is missing or it is not ``.json``."""
    target = Path(path).expanduser()
    if target.suffix.lower() != ".json":
        raise InputError(f"--neuronpedia writes JSON: give a file ending in .json, got '{target.name}'")
    if not target.parent.is_dir():
        raise InputError(f"folder '{target.parent}' does not exist; create it first")
    return target


def parse_changes(text: str, flag: str) -> dict[str, float]:
    """'f:3:5:120=0,f:2:1:7=2.5' -> {'f:3:5:120': 0.0, 'f:2:1:7': 2.5} for --change."""
    changes = {}
    for part in (p.strip() for p in text.split(",")):
        node, _, value = (piece.strip() for piece in part.partition("="))
        if not node or not _is_number(value):
            raise InputError(f"--{flag} takes NODE=VALUE pairs separated by commas, e.g. f:3:5:120=0; got '{part}'")
        changes[node] = float(value)
    return changes


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


NodeId = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class GraphInterventionOptions(GraphSettings):
    changes: Annotated[
        dict[NodeId, float] | None,
        Field(
            max_length=MAX_LIST,
            description="Feature nodes to set and their new activations (0 ablates), e.g. f:3:5:120=0.",
        ),
        Cli(("--change",), parse=parse_changes, whole=True),
    ] = None


OPERATIONS = [
    OperationSpec(
        "graph",
        GraphOptions,
        build_graph,
        AttributionGraph,
        "Attribution graph: how the prompt's next token is computed through transcoder features.",
        "circuits",
        long=True,
        local_only=frozenset({"neuronpedia"}),
        http_types=(("transcoders", TranscodersName),),
    ),
    OperationSpec(
        "graph-intervene",
        GraphInterventionOptions,
        intervene_graph,
        GraphIntervention,
        "Check an attribution graph: set feature nodes to new activations; the graph's prediction vs the model's.",
        "circuits",
        long=True,
        http_types=(("transcoders", TranscodersName),),
    ),
]
