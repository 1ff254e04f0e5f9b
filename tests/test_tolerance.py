"""The tests' own comparison helpers: they accept float rounding between two routes and nothing more."""

from __future__ import annotations

import pytest
import torch

from .browser.shown import forms, pct, shows
from .tolerance import assert_greedy, assert_same_ranking


def test_greedy_accepts_a_near_tie_and_rejects_a_real_loss():
    logits = torch.tensor([[0.5, 0.5 - 1e-7, 0.1], [0.2, 0.9, 0.3]])
    assert_greedy(logits, [1, 1])  # token 1 trails token 0 by rounding only
    with pytest.raises(AssertionError, match="not the greedy"):
        assert_greedy(logits, [2, 1])


def test_ranking_allows_swapped_ties_only():
    values = [0.9, 0.5, 0.5 + 1e-7, 0.1]
    assert_same_ranking([4, 7, 2, 9], values, [4, 2, 7, 9], values)  # 7 and 2 tie
    with pytest.raises(AssertionError, match="rank 0"):
        assert_same_ranking([7, 4, 2, 9], values, [4, 7, 2, 9], values)
    with pytest.raises(AssertionError):
        assert_same_ranking([4, 7, 2, 9], [0.9, 0.5, 0.5, 0.2], [4, 7, 2, 9], values)


def test_a_printed_number_may_round_either_way_at_a_boundary():
    assert forms(0.12345) == {"0.123"}
    assert shows("clean 0.124 \u2192 ablated 0.123", "clean {} \u2192 ablated {}", 0.1235, 0.123)
    assert shows("p 50.0%", "p {}", 0.49999999, f=pct)
    assert not shows("p 50.1%", "p {}", 0.5, f=pct)
