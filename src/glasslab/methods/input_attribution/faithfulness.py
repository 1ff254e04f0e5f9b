"""Faithfulness of an attribution: does removing the tokens it ranks highest really move the target?

Tokens are ordered by score, highest first (for signed methods: the tokens that pushed the target up
most come first), and removed or inserted in that order, a removed token taking the baseline
embedding (BOS stays):

- Deletion curve: ``f`` after removing the first k tokens, k = 0..players; it starts at ``f(prompt)``
  and ends at ``f(baseline)``. A faithful ranking makes it fall fast: a small area under it.
- Insertion curve: ``f`` with only the first k tokens present; from ``f(baseline)`` to ``f(prompt)``.
  A faithful ranking makes it rise fast: a large area.
- Areas are taken over the fraction of tokens (0..1) by the trapezoid rule, in the target's units.
  The ``score`` used for ranking is ``insertion AUC - deletion AUC``: the area between the curves.
  For a random order the two curves mirror each other in expectation, so its score is about 0; it
  is in the target's units, so it ranks methods on one prompt and target (not across prompts). No
  normalisation by ``f(prompt) - f(baseline)``: that difference can be near 0 or negative, and
  dividing by it would blow up or flip the scores.
- Comprehensiveness and sufficiency (DeYoung et al. 2020, ERASER), in the target's units, at the
  top ``ceil(q * players)`` tokens for each level q (1, 5, 10, 20, 50% by default) and averaged over
  the levels: comprehensiveness ``f(prompt) - f(prompt without them)`` (higher = they were needed),
  sufficiency ``f(prompt) - f(only them)`` (lower = they were enough). Both are points of the curves.

Long prompts evaluate the curves at up to ``max_points`` evenly spaced k (always including the levels'
k), all in batched passes; a coalition already evaluated for this prompt is not evaluated again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ...errors import InputError
from ...views.result import Record
from .prepared import Prepared

LEVELS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.2, 0.5)
MAX_POINTS = 33


@dataclass(frozen=True)
class Faithfulness(Record):
    order: list[int]  # attributed positions, most important first
    counts: list[int]  # k: tokens removed (deletion) or present (insertion) at each curve point
    deletion: list[float]  # f after removing the first k tokens
    insertion: list[float]  # f with only the first k tokens present
    deletion_auc: float  # area under the deletion curve over the fraction removed; lower is better
    insertion_auc: float  # area under the insertion curve; higher is better
    score: float  # insertion_auc - deletion_auc
    levels: list[float]
    comprehensiveness_at: list[float]
    sufficiency_at: list[float]
    comprehensiveness: float  # mean over levels (AOPC)
    sufficiency: float


def curve_counts(players: int, levels: Sequence[float], max_points: int = MAX_POINTS) -> list[int]:
    """The k at which curves are evaluated: all of 0..players, or evenly spaced ones plus the levels' k."""
    if players + 1 <= max_points:
        return list(range(players + 1))
    spaced = np.rint(np.linspace(0, players, max_points)).astype(int).tolist()
    return sorted(set(spaced) | {level_count(players, q) for q in levels})


def level_count(players: int, level: float) -> int:
    return min(players, max(1, math.ceil(level * players - 1e-9)))


def curve_masks(
    prep: Prepared, scores: torch.Tensor, levels: Sequence[float], max_points: int
) -> tuple[list[int], list[int], torch.Tensor]:
    """(ranked player indices, counts k, [2 * points, players] kept-token masks: deletion rows then insertion)."""
    m = prep.n_players
    if scores.shape != (m,):
        raise InputError(f"expected {m} scores (one per attributed token), got shape {tuple(scores.shape)}")
    if not levels or any(not 0 < q <= 1 for q in levels):
        raise InputError(f"levels must be fractions in (0, 1], got {list(levels)}")
    if max_points < 2:
        raise InputError(f"max_points must be at least 2, got {max_points}")
    ranked = sorted(range(m), key=lambda i: (-float(scores[i]), i))  # ties: earlier token first
    rank = torch.empty(m, dtype=torch.long)
    rank[ranked] = torch.arange(m)
    counts = curve_counts(m, levels, max_points)
    firsts = rank[None, :] < torch.tensor(counts)[:, None]  # [points, m]: the first k tokens
    return ranked, counts, torch.cat([~firsts, firsts])


def evaluate_all(
    prep: Prepared,
    all_scores: Sequence[torch.Tensor],
    *,
    levels: Sequence[float] = LEVELS,
    max_points: int = MAX_POINTS,
) -> None:
    """Evaluate the curves of several rankings in one batched sweep (``measure`` then reads the cache)."""
    masks = [curve_masks(prep, scores, levels, max_points)[2] for scores in all_scores]
    prep.coalition_values(torch.cat(masks))


def measure(
    prep: Prepared, scores: torch.Tensor, *, levels: Sequence[float] = LEVELS, max_points: int = MAX_POINTS
) -> Faithfulness:
    """Deletion/insertion curves, their AUCs and ERASER scores for the order given by ``scores``."""
    m = prep.n_players
    ranked, counts, masks = curve_masks(prep, scores, levels, max_points)
    values = prep.coalition_values(masks)
    deletion, insertion = values[: len(counts)], values[len(counts) :]
    fractions = np.array(counts) / m
    deletion_auc = float(np.trapezoid(deletion.numpy(), fractions))
    insertion_auc = float(np.trapezoid(insertion.numpy(), fractions))
    at = [counts.index(level_count(m, q)) for q in levels]
    comprehensiveness = [prep.full_value - float(deletion[i]) for i in at]
    sufficiency = [prep.full_value - float(insertion[i]) for i in at]
    return Faithfulness(
        order=[prep.positions[i] for i in ranked],
        counts=counts,
        deletion=deletion.tolist(),
        insertion=insertion.tolist(),
        deletion_auc=deletion_auc,
        insertion_auc=insertion_auc,
        score=insertion_auc - deletion_auc,
        levels=list(levels),
        comprehensiveness_at=comprehensiveness,
        sufficiency_at=sufficiency,
        comprehensiveness=float(np.mean(comprehensiveness)),
        sufficiency=float(np.mean(sufficiency)),
    )


def mean_of(results: Sequence[Faithfulness]) -> Faithfulness:
    """Point-wise mean of several measurements on the same prompt (e.g. random orders as a reference)."""
    first = results[0]

    def avg(name: str) -> float:
        return float(np.mean([getattr(r, name) for r in results]))

    def avg_list(name: str) -> list[float]:
        return np.mean([getattr(r, name) for r in results], axis=0).tolist()

    return Faithfulness(
        order=first.order,
        counts=first.counts,
        deletion=avg_list("deletion"),
        insertion=avg_list("insertion"),
        deletion_auc=avg("deletion_auc"),
        insertion_auc=avg("insertion_auc"),
        score=avg("score"),
        levels=first.levels,
        comprehensiveness_at=avg_list("comprehensiveness_at"),
        sufficiency_at=avg_list("sufficiency_at"),
        comprehensiveness=avg("comprehensiveness"),
        sufficiency=avg("sufficiency"),
    )
