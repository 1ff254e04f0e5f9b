"""Build the adjacency matrix of an attribution graph: which targets, which features, their direct effects.

Every active feature is a candidate node. When there are more than ``max_feature_nodes``, features are
visited in order of their estimated influence on the targets (from the rows computed so far, starting
from the logits'), ``batch`` at a time, and the rest are left out of the graph; their effects on what is
kept are dropped with them, which the completeness score then shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .edges import Readout, effects
from .influence import normalised
from .replacement import LinearisedPass


@dataclass(frozen=True)
class LogitTarget:
    """A target: a direction read from the final norm's output at the last position (a logit or a contrast)."""

    label: str  # e.g. " Paris", or " Paris - London" for a contrast
    token: int  # the token id (the first token of a contrast)
    direction: torch.Tensor  # [d_model]
    weight: float  # its share of the influence that pruning keeps (probabilities, normalised)
    probability: float  # the model's probability of the token (0 for a contrast)
    logit: float  # the readout's value on the prompt (bias excluded)


@dataclass(frozen=True)
class Adjacency:
    """The graph before pruning. Node order: features (by layer, position, id), errors (layer, position),
    tokens (position), targets. ``matrix[t, s]`` is the direct effect of node s on node t."""

    matrix: torch.Tensor  # [n, n]
    feature_layers: torch.Tensor  # [n_features]
    feature_positions: torch.Tensor
    feature_ids: torch.Tensor
    feature_values: torch.Tensor
    n_layers: int
    n_positions: int
    n_active: int  # active features on the prompt, visited or not

    @property
    def n_features(self) -> int:
        return int(self.feature_ids.numel())

    def kinds(self) -> list[str]:
        """Each node's kind: feature, error, token or logit."""
        n_errors = self.n_layers * self.n_positions
        n_targets = self.matrix.shape[0] - self.n_features - n_errors - self.n_positions
        return (
            ["feature"] * self.n_features + ["error"] * n_errors + ["token"] * self.n_positions + ["logit"] * n_targets
        )


def feature_readouts(forward: LinearisedPass, encoders: list[torch.Tensor]) -> list[Readout]:
    """Each active feature's pre-activation as a readout (encoder column at its layer and position)."""
    readouts = []
    for active, encoder in zip(forward.clean.active, encoders, strict=True):
        columns = encoder[:, active.features].T
        for position, column in zip(active.positions.tolist(), columns, strict=True):
            readouts.append(Readout(active.layer, position, column))
    return readouts


def build_adjacency(
    forward: LinearisedPass, targets: list[LogitTarget], encoders: list[torch.Tensor], max_feature_nodes: int
) -> Adjacency:
    """Compute the direct effects on every target and on the features chosen as nodes."""
    clean = forward.clean
    target_rows = effects(forward, [Readout(None, clean.n_positions - 1, t.direction) for t in targets])
    readouts = feature_readouts(forward, encoders)
    n_active = len(readouts)
    chosen, feature_rows = _visit(forward, readouts, target_rows, targets, max_feature_nodes)
    layers = torch.cat([torch.full((len(a),), a.layer) for a in clean.active]).long()
    positions = torch.cat([a.positions for a in clean.active]).long()
    ids = torch.cat([a.features for a in clean.active]).long()
    values = torch.cat([a.values for a in clean.active]).float()
    n_rest = target_rows.shape[1] - n_active  # error and token columns
    columns = torch.cat([chosen, torch.arange(n_active, n_active + n_rest)])
    n_chosen = chosen.numel()
    size = n_chosen + n_rest + len(targets)
    matrix = torch.zeros(size, size)
    n_sources = n_chosen + n_rest  # targets are never sources
    matrix[:n_chosen, :n_sources] = feature_rows[:, columns]
    matrix[n_sources:, :n_sources] = target_rows[:, columns]
    return Adjacency(
        matrix,
        layers[chosen],
        positions[chosen],
        ids[chosen],
        values[chosen],
        len(clean.active),
        clean.n_positions,
        n_active,
    )


def _visit(
    forward: LinearisedPass,
    readouts: list[Readout],
    target_rows: torch.Tensor,
    targets: list[LogitTarget],
    max_feature_nodes: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen feature indices in node order, their rows): all features, or the most influential ones."""
    n_active = len(readouts)
    if n_active <= max_feature_nodes:
        return torch.arange(n_active), effects(forward, readouts)
    weights = torch.tensor([t.weight for t in targets])
    visited: list[int] = []
    rows = torch.zeros(0, target_rows.shape[1])
    while len(visited) < max_feature_nodes:
        influence = _estimated_influence(weights @ normalised(target_rows), normalised(rows), visited, n_active)
        if visited:
            influence[torch.tensor(visited)] = -1.0
        step = min(4 * forward.batch, max_feature_nodes - len(visited))
        # In readout order (by layer), so each backward batch holds targets of nearby layers and stops early.
        batch = sorted(torch.argsort(influence, descending=True)[:step].tolist())
        rows = torch.cat([rows, effects(forward, [readouts[i] for i in batch])])
        visited += batch
    order = torch.tensor(visited)
    ranks = torch.argsort(order)  # node order is by layer, position, id: the readouts' own order
    return order[ranks], rows[ranks]


def _estimated_influence(
    from_targets: torch.Tensor, visited_shares: torch.Tensor, visited: list[int], n_active: int
) -> torch.Tensor:
    """[n_active] influence of each feature on the targets through the visited features' rows so far."""
    total = from_targets.clone()
    reach = from_targets
    for _ in range(64):  # deeper than any model's layer count; stops when nothing is left to pass on
        if not visited:
            break
        reach = reach[torch.tensor(visited)] @ visited_shares
        if not bool(reach.any()):
            break
        total += reach
    return total[:n_active].clone()
