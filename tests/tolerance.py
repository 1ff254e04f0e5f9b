"""Comparisons of values computed by two routes (a key/value cache and a full pass, another batch, another
endpoint): equal only up to float rounding, which differs between CPUs and BLAS builds, so a near-tie may
break either way. These helpers accept exactly that much and no more."""

from __future__ import annotations

from collections.abc import Sequence

import torch

REL = 1e-5  # float32 rounding after a few layers, relative to the values' scale


def slack(values: torch.Tensor, rel: float = REL) -> float:
    """The rounding allowed for `values`: rel times their largest magnitude (at least rel)."""
    return rel * max(1.0, float(values.detach().abs().max()))


def assert_greedy(logits: torch.Tensor, tokens: Sequence[int], rel: float = REL) -> None:
    """Each of `tokens` is the greedy choice of its row of `logits` [n, vocab]: the row's maximum, or within
    rounding of it."""
    assert logits.shape[0] == len(tokens), (logits.shape, len(tokens))
    chosen = logits[torch.arange(len(tokens)), torch.as_tensor(list(tokens), dtype=torch.long)]
    gaps = (logits.max(-1).values - chosen).tolist()
    assert max(gaps, default=0.0) <= slack(logits, rel), f"tokens {list(tokens)} are not the greedy ones: gaps {gaps}"


def assert_same_ranking(
    ids: Sequence[int], values: Sequence[float], expected_ids: Sequence[int], expected_values: Sequence[float]
) -> None:
    """Two rankings (ids with their values, best first) agree: the values match within rounding, and the ids
    match wherever the expected values are not tied within rounding (tied ids may come in either order)."""
    got, want = torch.tensor(values, dtype=torch.float64), torch.tensor(expected_values, dtype=torch.float64)
    tol = slack(want)
    torch.testing.assert_close(got, want, rtol=0, atol=tol)
    for i, (a, b) in enumerate(zip(ids, expected_ids, strict=True)):
        if a != b:
            neighbours = [j for j in (i - 1, i + 1) if 0 <= j < len(want)]
            tied = any(abs(float(want[i] - want[j])) <= 2 * tol for j in neighbours) or i == len(want) - 1
            assert tied, f"rank {i}: {a} where {b} was expected ({list(ids)} vs {list(expected_ids)})"
