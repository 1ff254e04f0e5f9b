"""An attribution graph as the JSON Neuronpedia's and circuit-tracer's graph viewers read.

The layout follows circuit-tracer's ``frontend/graph_models.py`` and ``utils/create_graph_files.py``
(schema version 1): ``metadata`` (slug, scan, transcoder_list, prompt_tokens, prompt, node_threshold,
schema_version), ``qParams`` (the viewer's initial state), ``nodes`` and ``links``. Node ids are theirs:
``{layer}_{feature}_{position}`` for features, ``{layer}_-1_{position}`` for error nodes,
``E_{token id}_{position}`` for embeddings and ``{n_layers + 1}_{token id}_{position}`` for logits. A
feature node's ``feature`` is the Cantor pairing of (layer, feature index), as theirs is when no scan gives
a fixed width; an error node's ``jsNodeId`` is ``{layer}_-1-{position}`` so it cannot alias a feature's.

``scan`` is the transcoder set's name (a folder's last part, never its path). ``influence`` is what
circuit-tracer's pruning reports and the viewer's node slider reads: each node's place in the cumulative
share of influence, nodes taken from most to least influential (the most influential node has the smallest
value), over the full graph before pruning.
"""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Any

import torch

from .influence import node_influence
from .result import AttributionGraph, GraphNode

SCHEMA_VERSION = 1
FEATURE_TYPES = {
    "feature": "cross layer transcoder",
    "error": "mlp reconstruction error",
    "token": "embedding",
    "logit": "logit",
}


def to_neuronpedia(graph: AttributionGraph, slug: str | None = None, scan: str | None = None) -> dict[str, Any]:
    """The graph's pruned nodes and edges as a Neuronpedia / circuit-tracer graph file (a JSON-ready dict).

    ``slug`` names the graph in the viewer (default: from the prompt); ``scan`` names the transcoders
    (default: the name the graph was built with)."""
    cumulative = _cumulative_influence(graph)
    index = {node_id: i for i, node_id in enumerate(graph.all_node_ids)}
    n_layers = graph.adjacency.n_layers
    nodes = [_node(node, graph, n_layers, cumulative[index[node.id]]) for node in graph.nodes]
    ids = {node.id: entry["node_id"] for node, entry in zip(graph.nodes, nodes, strict=True)}
    links = [
        {"source": ids[edge.source], "target": ids[edge.target], "weight": edge.weight}
        for edge in graph.edges
        if edge.source in ids and edge.target in ids
    ]
    transcoders = PurePath(str(graph.settings.get("transcoders") or "glasslab-transcoders")).name  # never a path
    return {
        "metadata": {
            "slug": slug or _slug(graph.prompt),
            "scan": scan or transcoders,
            "transcoder_list": [],
            "prompt_tokens": [_visible(token) for token in graph.tokens],
            "prompt": graph.prompt,
            "node_threshold": graph.settings.get("node_threshold"),
            "schema_version": SCHEMA_VERSION,
        },
        "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""},
        "nodes": nodes,
        "links": links,
    }


def _node(node: GraphNode, graph: AttributionGraph, n_layers: int, influence: float) -> dict[str, Any]:
    base = {
        "ctx_idx": node.position,
        "feature_type": FEATURE_TYPES[node.kind],
        "token_prob": 0.0,
        "is_target_logit": False,
        "run_idx": 0,
        "reverse_ctx_idx": 0,
        "clerp": node.label,
        "influence": influence,
        "activation": None,
    }
    if node.kind == "feature":
        layer, feature = int(node.layer or 0), int(node.feature or 0)
        return {
            **base,
            "node_id": f"{layer}_{feature}_{node.position}",
            "feature": _cantor(layer, feature),
            "layer": str(layer),
            "jsNodeId": f"{layer}_{feature}-0",
            "activation": node.value,
        }
    if node.kind == "error":
        layer = int(node.layer or 0)
        return {
            **base,
            "node_id": f"{layer}_-1_{node.position}",
            "feature": -1,
            "layer": str(layer),
            "jsNodeId": f"{layer}_-1-{node.position}",
        }
    if node.kind == "token":
        token_id = graph.token_ids[node.position]
        return {
            **base,
            "node_id": f"E_{token_id}_{node.position}",
            "feature": node.position,
            "layer": "E",
            "jsNodeId": f"E_{token_id}-{node.position}",
        }
    rank = next(k for k, target in enumerate(graph.targets) if f"l:{target['token']}" == node.id)
    target = graph.targets[rank]
    probability = float(target["probability"])
    return {
        **base,
        "node_id": f"{n_layers + 1}_{target['token']}_{node.position}",
        "feature": int(target["token"]),
        "layer": str(n_layers + 1),
        "jsNodeId": f"L_{target['token']}-{node.position}",
        "token_prob": probability,
        "is_target_logit": rank == 0,
        "clerp": f'Output "{_visible(target["label"])}" (p={probability:.3f})',
        "influence": None,
    }


def _cumulative_influence(graph: AttributionGraph) -> list[float]:
    """Each node's cumulative influence share, most influential first (circuit-tracer's ``prune_graph``)."""
    matrix = graph.adjacency.matrix
    weights = torch.zeros(matrix.shape[0])
    weights[-len(graph.targets) :] = torch.tensor([float(t["weight"]) for t in graph.targets])
    influence = node_influence(matrix, weights, graph.adjacency.n_layers + 2)
    ordered, order = torch.sort(influence, descending=True)
    cumulative = torch.cumsum(ordered, 0) / ordered.sum().clamp_min(1e-12)
    shares = torch.zeros_like(influence)
    shares[order] = cumulative
    return shares.tolist()


def _cantor(x: int, y: int) -> int:
    return (x + y) * (x + y + 1) // 2 + y


def _visible(token: str) -> str:
    """A token as the viewer shows it: line breaks and tabs as visible marks."""
    return token.replace("\n", "⏎").replace("\t", "→")


def _slug(prompt: str) -> str:
    words = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")
    return (words[:60].rstrip("-") or "graph") + "-glasslab"
