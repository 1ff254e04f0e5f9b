"""Shapley values over prompt tokens (Lundberg & Lee 2017), exact or by permutation sampling.

Players are the attributed tokens; the value of a coalition S is ``f`` with the tokens in S present
and every other one at the baseline embedding. The Shapley value of a token is its marginal
contribution averaged over all orders in which the tokens could be added.

- When ``2**players <= budget`` every coalition is evaluated and the values are exact.
- Otherwise orders are sampled (seeded) in antithetic pairs, an order and its reverse, which cancels
  much of the variance; each order costs ``players - 1`` model evaluations (the empty and full
  coalitions are shared), so the budget buys ``(budget - 2) // (players - 1)`` orders, rounded down to
  an even number (at least 2). Within one order the marginals telescope, so the estimates add up to
  ``f(all) - f(none)`` exactly (efficiency) however few orders are drawn. The standard error is the
  spread of the pair means over the pairs (reported with at least 2 pairs).

Coalitions are evaluated in batched forward passes, and a coalition met twice is evaluated once.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ...errors import InputError
from .prepared import Prepared
from .result import MethodOutput

MIN_BUDGET = 4


def shapley_values(prep: Prepared, budget: int = 128, seed: int = 0) -> MethodOutput:
    if budget < MIN_BUDGET:
        raise InputError(f"the SHAP budget must be at least {MIN_BUDGET} model evaluations, got {budget}")
    m = prep.n_players
    if 2**m <= budget:
        return _exact(prep)
    return _sampled(prep, budget, seed)


def _exact(prep: Prepared) -> MethodOutput:
    m = prep.n_players
    codes = torch.arange(2**m)
    keep = (codes[:, None] >> torch.arange(m)) & 1  # [2^m, m]
    values = prep.coalition_values(keep.bool())
    sizes = keep.sum(1)
    weight = torch.tensor([math.factorial(k) * math.factorial(m - k - 1) / math.factorial(m) for k in range(m)])
    scores = torch.zeros(m, dtype=torch.float64)
    for i in range(m):
        without = codes[keep[:, i] == 0]
        scores[i] = (weight[sizes[without]] * (values[without | (1 << i)] - values[without])).sum()
    details = {"estimator": "exact", "coalitions": 2**m}
    return MethodOutput(scores, evaluations=2**m - 2, stderr=torch.zeros(m, dtype=torch.float64), details=details)


def _sampled(prep: Prepared, budget: int, seed: int) -> MethodOutput:
    m = prep.n_players
    n_orders = max(2, ((budget - 2) // (m - 1)) // 2 * 2)
    rng = np.random.default_rng(seed)
    orders = []
    for _ in range(n_orders // 2):
        order = rng.permutation(m)
        orders += [order, order[::-1]]
    orders_t = torch.tensor(np.array(orders))  # [orders, m]
    # prefix masks: row (o, k) keeps the first k tokens of order o, k = 0..m
    rank = torch.empty_like(orders_t)
    rank.scatter_(1, orders_t, torch.arange(m).expand(n_orders, m))
    keep = rank[:, None, :] < torch.arange(m + 1)[None, :, None]  # [orders, m+1, m]
    values = prep.coalition_values(keep.reshape(-1, m)).reshape(n_orders, m + 1)
    marginals = torch.zeros(n_orders, m, dtype=torch.float64)
    marginals.scatter_(1, orders_t, values[:, 1:] - values[:, :-1])
    pairs = marginals.reshape(-1, 2, m).mean(1)
    stderr = pairs.std(0, unbiased=True) / math.sqrt(pairs.shape[0]) if pairs.shape[0] >= 2 else None
    details = {"estimator": "antithetic permutation sampling", "orders": n_orders, "seed": seed, "budget": budget}
    return MethodOutput(marginals.mean(0), evaluations=n_orders * (m - 1), stderr=stderr, details=details)
