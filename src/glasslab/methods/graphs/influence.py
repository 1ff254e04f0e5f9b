"""Influence, pruning and the graph's scores, from the adjacency matrix of direct effects.

``adjacency[t, s]`` is the direct effect of node ``s`` on node ``t``. Influence asks how much of what
reaches the targets passes through each node: edges are taken by magnitude and each row is normalised to
sum to 1 (a node's inputs as shares), and a node's influence is the target-weighted sum over every path
from it to the targets of the product of those shares. The graph is acyclic (a feature only feeds later
layers), so the path sum is exact after as many steps as the graph is deep.

Scores (Ameisen et al. 2025): the **replacement score** is the share of the targets' end-to-end influence
that starts at token embeddings rather than at error nodes (1 = the transcoders explain everything), and
the **completeness score** is the share of each node's input that comes from non-error nodes, averaged
over nodes weighted by their influence (targets weighted by their own weights; nodes with no input count
as wholly explained), as circuit-tracer defines them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def normalised(adjacency: torch.Tensor) -> torch.Tensor:
    """|adjacency| with each row scaled to sum to 1 (rows with no input stay zero)."""
    magnitude = adjacency.abs()
    return magnitude / magnitude.sum(dim=1, keepdim=True).clamp_min(1e-12)


def node_influence(adjacency: torch.Tensor, target_weights: torch.Tensor, depth: int) -> torch.Tensor:
    """[n] each node's influence on the weighted targets (``target_weights`` [n], zero off the targets)."""
    shares = normalised(adjacency)
    reach = target_weights.clone()
    total = torch.zeros_like(target_weights)
    for _ in range(depth):
        reach = reach @ shares
        total += reach
        if not bool(reach.any()):
            break
    return total


@dataclass(frozen=True)
class Pruned:
    """Which nodes and edges survive pruning."""

    nodes: torch.Tensor  # [n] bool
    edges: torch.Tensor  # [n, n] bool, same layout as the adjacency


def prune(
    adjacency: torch.Tensor,
    target_weights: torch.Tensor,
    is_feature: torch.Tensor,
    is_error: torch.Tensor,
    depth: int,
    node_threshold: float,
    edge_threshold: float,
) -> Pruned:
    """Keep the nodes whose influence, largest first, makes up ``node_threshold`` of all nodes' influence
    (tokens and targets always stay), then the edges whose scores make up ``edge_threshold`` of all edges'
    scores; then drop, until none is left, features and error nodes with no kept edge out and features with
    no kept edge in. (These are circuit-tracer's rules, so its graphs and glasslab's prune alike.)"""
    influence = node_influence(adjacency, target_weights, depth)
    prunable = is_feature | is_error
    keep = ~prunable | (influence >= _share_threshold(influence, node_threshold))
    kept = adjacency * keep[:, None] * keep[None, :]
    edge_score = normalised(kept) * (node_influence(kept, target_weights, depth) + target_weights)[:, None]
    edges = (edge_score >= _share_threshold(edge_score.flatten(), edge_threshold)) & (edge_score > 0)
    while True:
        edges &= keep[:, None] & keep[None, :]
        dangling = (prunable & keep & ~edges.any(dim=0)) | (is_feature & keep & ~edges.any(dim=1))
        if not bool(dangling.any()):
            return Pruned(keep, edges)
        keep &= ~dangling


def _share_threshold(scores: torch.Tensor, share: float) -> float:
    """The smallest score among those that, largest first, make up ``share`` of the total."""
    ordered = torch.sort(scores, descending=True).values
    total = float(ordered.sum())
    if total <= 0:
        return float("inf")
    cumulative = torch.cumsum(ordered, 0) / total
    index = int(torch.searchsorted(cumulative, torch.tensor(share, dtype=cumulative.dtype)).item())
    return float(ordered[min(index, len(ordered) - 1)])


def scores(
    adjacency: torch.Tensor, target_weights: torch.Tensor, is_error: torch.Tensor, is_token: torch.Tensor, depth: int
) -> tuple[float, float]:
    """(replacement score, completeness score) of a graph (see the module docstring)."""
    influence = node_influence(adjacency, target_weights, depth)
    from_errors = float(influence[is_error].sum())
    from_tokens = float(influence[is_token].sum())
    replacement = from_tokens / max(from_tokens + from_errors, 1e-12)
    shares = normalised(adjacency)
    clean_share = 1.0 - shares[:, is_error].sum(dim=1)  # nodes with no input (tokens, errors) count as whole
    weight = influence + target_weights
    completeness = float((clean_share * weight).sum() / weight.sum().clamp_min(1e-12))
    return replacement, completeness
