"""The attribution graph as a result: nodes, pruned edges, scores, and the full adjacency for Python users.

JSON carries the pruned graph (what a viewer draws) plus the scores of both the full and the pruned graph;
``adjacency`` (every direct effect before pruning) stays on the Python object.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from ...dictionaries.cross_layer import CrossLayerTranscoderSet
from ...dictionaries.labels_file import FeatureLabel
from ...dictionaries.loading import labels_of
from ...dictionaries.transcoder_set import TranscoderSet
from ...model.model import Model
from ...views.explanations import explanation
from ...views.figures import Bars, Figure
from ...views.graph_page import graph_page
from ...views.result import Record, Result
from .build import Adjacency, LogitTarget
from .influence import Pruned
from .replacement import CleanPass


@dataclass(frozen=True)
class GraphNode(Record):
    """One node. ``id`` is stable across runs of the same prompt and transcoders."""

    id: str  # "f:L:P:F" feature, "e:L:P" error, "t:P" token, "l:T" logit target
    kind: str  # feature | error | token | logit
    layer: int | None
    position: int
    feature: int | None
    value: float  # activation (feature), error norm (error), logit (target); 0 for tokens
    influence: float  # share of the targets' influence that passes through the node
    label: str  # token text for tokens and targets; a feature's label from its transcoder set ("" if none)


@dataclass(frozen=True)
class GraphEdge(Record):
    source: str
    target: str
    weight: float  # direct effect of source on target, in the target's units


@dataclass(frozen=True)
class GraphScores(Record):
    replacement: float  # share of end-to-end influence that starts at tokens rather than error nodes
    completeness: float  # share of the nodes' inputs that come from non-error nodes, influence-weighted


@dataclass(frozen=True)
class AttributionGraph(Result):
    """An attribution graph of one prompt's next token (``attribution_graph``)."""

    kind: ClassVar[str] = "attribution_graph"
    json_keys: ClassVar[tuple[str, ...]] = (
        "model",
        "prompt",
        "tokens",
        "targets",
        "nodes",
        "edges",
        "scores",
        "pruned_scores",
        "n_active_features",
        "n_feature_nodes",
        "replay_error",
        "settings",
    )

    model: str
    prompt: str
    tokens: list[str]
    targets: list[dict[str, Any]]
    nodes: list[GraphNode]  # the pruned graph's nodes
    edges: list[GraphEdge]  # the pruned graph's edges
    scores: GraphScores  # of the full graph
    pruned_scores: GraphScores
    n_active_features: int
    n_feature_nodes: int  # features computed as nodes before pruning (at most max_feature_nodes)
    replay_error: float  # max |target readout| difference between the replacement and the model
    settings: dict[str, Any]
    adjacency: Adjacency = field(repr=False, compare=False)
    all_node_ids: list[str] = field(repr=False, compare=False)
    directions: torch.Tensor = field(repr=False, compare=False)  # [d_model, n_targets] what each target reads
    token_ids: list[int] = field(repr=False, compare=False)  # the prompt's token ids (viewers name nodes by them)
    clean: CleanPass | None = field(default=None, repr=False, compare=False)  # the pass the graph was built on

    def node(self, node_id: str) -> GraphNode:
        """A kept node by id."""
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def effect(self, source: str, target: str) -> float:
        """The direct effect of one node on another in the full (unpruned) graph, by id."""
        index = {node_id: i for i, node_id in enumerate(self.all_node_ids)}
        return float(self.adjacency.matrix[index[target], index[source]])

    def figure(self) -> Figure:
        features = sorted((n for n in self.nodes if n.kind == "feature"), key=lambda n: -n.influence)[:20]
        bars = Bars("Influence on the targets", [n.id for n in features], [n.influence for n in features], "influence")
        targets = ", ".join(repr(t["label"]) for t in self.targets[:3])
        scores = {
            "replacement score": f"{self.scores.replacement:.3f}",
            "completeness": f"{self.scores.completeness:.3f}",
        }
        return Figure(f"Attribution graph for {targets}", [bars], **explanation(self.kind), extra=scores)

    def html_page(self) -> str:
        """The interactive page ``save("graph.html")`` writes: nodes by layer and position, edges by weight."""
        return graph_page(self.to_dict(), self.adjacency.n_layers, explanation(self.kind))


FeatureLabels = Callable[[int, int], str]  # (layer, feature) -> its label, "" when it has none


def transcoder_labels(transcoders: object) -> FeatureLabels:
    """The labels of a set's features, per-layer or cross-layer (``glasslab transcoders precompute`` writes
    them beside each (source) layer; a person's own labels over them), read per layer when first asked for;
    "" for a set without labels files (one not loaded from a folder). A cross-layer set's are read from its
    folder: building its per-layer view would sum that layer's decoders just to find a file."""
    by_layer: dict[int, dict[int, FeatureLabel]] = {}

    def label(layer: int, feature: int) -> str:
        if layer not in by_layer:
            by_layer[layer] = _layer_labels(transcoders, layer)
        entry = by_layer[layer].get(feature)
        return "" if entry is None else entry.label

    return label


def _layer_labels(transcoders: object, layer: int) -> dict[int, FeatureLabel]:
    if isinstance(transcoders, CrossLayerTranscoderSet) and layer in transcoders.layers:
        return transcoders.labels(layer)
    if isinstance(transcoders, TranscoderSet) and layer in transcoders.layers:
        return labels_of(transcoders.transcoder(layer))
    return {}


def node_ids(adjacency: Adjacency, targets: list[LogitTarget]) -> list[str]:
    """Every node's id, in the adjacency's order."""
    ids = [
        f"f:{layer}:{position}:{feature}"
        for layer, position, feature in zip(
            adjacency.feature_layers.tolist(),
            adjacency.feature_positions.tolist(),
            adjacency.feature_ids.tolist(),
            strict=True,
        )
    ]
    ids += [f"e:{layer}:{position}" for layer in range(adjacency.n_layers) for position in range(adjacency.n_positions)]
    ids += [f"t:{position}" for position in range(adjacency.n_positions)]
    ids += [f"l:{t.token}" for t in targets]
    return ids


def make_result(
    model: Model,
    prompt: str,
    tokens: torch.Tensor,
    targets: list[LogitTarget],
    adjacency: Adjacency,
    pruned: Pruned,
    *,
    influence: torch.Tensor,
    full_scores: tuple[float, float],
    pruned_scores: tuple[float, float],
    replay_error: float,
    settings: dict[str, Any],
    error_norms: torch.Tensor,
    labels: FeatureLabels | None = None,
    clean: CleanPass | None = None,
) -> AttributionGraph:
    """Assemble the result: kept nodes with their values, influence and (features, with ``labels``, e.g.
    ``transcoder_labels(transcoders)``) labels, kept edges by weight."""
    ids = node_ids(adjacency, targets)
    kinds = adjacency.kinds()
    str_tokens = model.to_str_tokens(tokens)
    n_features = adjacency.n_features
    nodes = []
    for i in torch.nonzero(pruned.nodes).flatten().tolist():
        node = _node(i, ids[i], kinds[i], adjacency, targets, str_tokens, float(influence[i]), error_norms)
        if labels is not None and node.kind == "feature":
            node = dataclasses.replace(node, label=labels(int(node.layer), int(node.feature)))  # type: ignore[arg-type]
        nodes.append(node)
    targets_at, sources_at = torch.nonzero(pruned.edges, as_tuple=True)
    weights = adjacency.matrix[targets_at, sources_at]
    order = torch.argsort(weights.abs(), descending=True).tolist()
    edges = [GraphEdge(ids[int(sources_at[k])], ids[int(targets_at[k])], float(weights[k])) for k in order]
    return AttributionGraph(
        model=model.name,
        prompt=prompt,
        tokens=str_tokens,
        targets=[
            {"label": t.label, "token": t.token, "probability": t.probability, "weight": t.weight, "logit": t.logit}
            for t in targets
        ],
        nodes=nodes,
        edges=edges,
        scores=GraphScores(*full_scores),
        pruned_scores=GraphScores(*pruned_scores),
        n_active_features=adjacency.n_active,
        n_feature_nodes=n_features,
        replay_error=replay_error,
        settings=settings,
        adjacency=adjacency,
        all_node_ids=ids,
        directions=torch.stack([t.direction for t in targets], dim=1),
        token_ids=[int(t) for t in tokens.tolist()],
        clean=clean,
    )


def _node(
    i: int,
    node_id: str,
    kind: str,
    adjacency: Adjacency,
    targets: list[LogitTarget],
    str_tokens: list[str],
    influence: float,
    error_norms: torch.Tensor,
) -> GraphNode:
    n_features, n_positions = adjacency.n_features, adjacency.n_positions
    if kind == "feature":
        layer, position = int(adjacency.feature_layers[i]), int(adjacency.feature_positions[i])
        feature, value = int(adjacency.feature_ids[i]), float(adjacency.feature_values[i])
        return GraphNode(node_id, kind, layer, position, feature, value, influence, "")
    if kind == "error":
        layer, position = divmod(i - n_features, n_positions)
        return GraphNode(node_id, kind, layer, position, None, float(error_norms[layer, position]), influence, "")
    if kind == "token":
        position = i - n_features - adjacency.n_layers * n_positions
        return GraphNode(node_id, kind, None, position, None, 0.0, influence, str_tokens[position])
    target = targets[i - (adjacency.matrix.shape[0] - len(targets))]
    return GraphNode(node_id, kind, None, n_positions - 1, None, target.logit, influence, target.label)
