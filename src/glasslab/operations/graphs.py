"""Attribution graphs: how a prompt's next token is computed through transcoder features (issue 20).

A transcoder set is named as ``TranscoderSet.load`` reads it: a name in the store for the loaded model, or
locally a folder. A request names only a store name (``http_types``), never a folder on the server.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import Field, StringConstraints

from ..dictionaries.transcoder_set import TranscoderSet
from ..errors import InputError
from ..methods.graphs import AttributionGraph, attribution_graph
from ..methods.graphs.export import to_neuronpedia
from ..model.model import Model
from ..store import NAME_PATTERN
from .options import MAX_BATCH, MAX_K, Cli, PromptOptions, Token
from .spec import OperationSpec

MAX_FEATURE_NODES = 16_384  # the adjacency is square in the node count: 16k nodes are a 1 GiB float32 matrix
TranscodersName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]  # over HTTP: a store name only
Share = Annotated[float, Field(gt=0.0, le=1.0)]


class GraphOptions(PromptOptions):
    transcoders: Annotated[
        str,
        StringConstraints(min_length=1, max_length=500),
        Field(description="The transcoder set: its name in the store for this model; locally also a folder."),
        Cli(("--transcoders", "-t")),
    ]
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
    transcoders: str,
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
    graph = attribution_graph(
        model,
        prompt,
        TranscoderSet.load(transcoders, model),
        target=target,
        contrast=contrast,
        max_logits=max_logits,
        logit_probability=logit_probability,
        max_feature_nodes=max_feature_nodes,
        node_threshold=node_threshold,
        edge_threshold=edge_threshold,
        batch_size=batch_size,
        transcoders_name=transcoders,
    )
    if destination is not None:
        destination.write_text(json.dumps(to_neuronpedia(graph), indent=2, ensure_ascii=False), encoding="utf-8")
    return graph


def _writable(path: str) -> Path:
    """The file to write, refused before minutes of work if its folder is missing or it is not ``.json``."""
    target = Path(path).expanduser()
    if target.suffix.lower() != ".json":
        raise InputError(f"--neuronpedia writes JSON: give a file ending in .json, got '{target.name}'")
    if not target.parent.is_dir():
        raise InputError(f"folder '{target.parent}' does not exist; create it first")
    return target


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
]
