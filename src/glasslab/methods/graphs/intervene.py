"""Check a graph's story by intervening on its features: what the graph predicts, what really happens.

Setting some feature nodes to new activations (0 ablates, a multiple steers), three answers for each
target, in the graph's own units (logit less the mean logit):

- **graph**: the change the graph predicts, summing direct effects along every path (each active feature
  passes on its pre-activation's change one for one; silent features stay silent);
- **frozen**: the local replacement model with attention and norms frozen at the prompt's values and every
  downstream feature recomputed through its transcoder's nonlinearity (features may switch on or off);
- **unfrozen**: the real model with each changed feature's write added to its MLP outputs, attention,
  norms and MLPs free to react.

``graph`` equals the frozen replacement with features kept linear (tested); the gap to ``frozen`` is the
nonlinearity of the features, the gap to ``unfrozen`` adds what freezing attention and the MLPs hides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ...errors import InputError
from ...model.model import Model
from ...views.explanations import explanation
from ...views.figures import Bars, Figure
from ...views.result import Record, Result
from .frozen import FrozenReplacement, Overrides, model_response
from .replacement import Transcoders, clean_pass
from .result import AttributionGraph


@dataclass(frozen=True)
class TargetResponse(Record):
    label: str
    graph: float  # predicted change of the target readout
    frozen: float  # measured, attention and norms frozen, features recomputed
    unfrozen: float  # measured in the real model


@dataclass(frozen=True)
class GraphIntervention(Result):
    """The effect of setting some graph features to new activations (``intervene_on_graph``)."""

    kind: ClassVar[str] = "graph_intervention"

    prompt: str
    changes: dict[str, float]  # node id -> new activation
    targets: list[TargetResponse]

    def figure(self) -> Figure:
        labels, values = [], []
        for target in self.targets:
            for route in ("graph", "frozen", "unfrozen"):
                labels.append(f"{target.label!r} {route}")
                values.append(getattr(target, route))
        bars = Bars("Change of each target (logit less the mean logit)", labels, values, "change")
        return Figure(f"Intervening on {len(self.changes)} graph feature(s)", [bars], **explanation(self.kind))


def intervene_on_graph(
    model: Model, graph: AttributionGraph, transcoders: Transcoders, changes: dict[str, float]
) -> GraphIntervention:
    """Set each feature node in ``changes`` (node id ``f:L:P:F`` -> activation) and measure the targets."""
    if not changes:
        raise InputError("give at least one feature node to change, e.g. {'f:3:5:120': 0.0}")
    overrides = _overrides(graph, changes)
    # The pass the graph was built on; a graph made otherwise gets its own.
    clean = graph.clean or clean_pass(model, model.to_tokens(graph.prompt)[0], transcoders)
    directions = graph.directions
    frozen = FrozenReplacement(model, clean, transcoders)
    _, base = frozen.run({}, "recomputed")
    _, recomputed = frozen.run(overrides, "recomputed")
    unfrozen = model_response(model, clean, transcoders, overrides) - clean.last_final
    predicted = predicted_changes(graph, overrides)
    responses = [
        TargetResponse(
            t["label"],
            float(predicted[k]),
            float((recomputed - base) @ directions[:, k]),
            float(unfrozen @ directions[:, k]),
        )
        for k, t in enumerate(graph.targets)
    ]
    return GraphIntervention(graph.prompt, dict(changes), responses)


def predicted_changes(graph: AttributionGraph, overrides: Overrides) -> torch.Tensor:
    """[n_targets] the graph's path-sum prediction of each target's change for ``overrides``."""
    adjacency = graph.adjacency
    n_features, n_targets = adjacency.n_features, len(graph.targets)
    values = adjacency.feature_values
    per_unit = adjacency.matrix[:, :n_features] / values.clamp_min(1e-12)[None, :]  # effect per unit activation
    forced = torch.zeros(n_features, dtype=torch.bool)
    delta = torch.zeros(n_features)
    index = {node_id: i for i, node_id in enumerate(graph.all_node_ids[:n_features])}
    for (layer, position, feature), value in overrides.items():
        i = index[f"f:{layer}:{position}:{feature}"]
        forced[i], delta[i] = True, value - float(values[i])
    for _ in range(adjacency.n_layers + 1):  # the graph is as deep as the model: paths settle in that many steps
        delta = torch.where(forced, delta, per_unit[:n_features] @ delta)
    return per_unit[-n_targets:] @ delta


def _overrides(graph: AttributionGraph, changes: dict[str, float]) -> dict[tuple[int, int, int], float]:
    known = set(graph.all_node_ids[: graph.adjacency.n_features])
    overrides = {}
    for node_id, value in changes.items():
        if node_id not in known:
            raise InputError(
                f"'{node_id}' is not a feature node of this graph (ids look like f:LAYER:POSITION:FEATURE)"
            )
        if not (isinstance(value, (int, float)) and value == value and abs(value) != float("inf")):
            raise InputError(f"the new activation of {node_id} must be a finite number, got {value!r}")
        _, layer, position, feature = node_id.split(":")
        overrides[int(layer), int(position), int(feature)] = float(value)
    return overrides
