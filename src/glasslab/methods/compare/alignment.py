"""Token alignment of two prompts, so per-position quantities can be compared when lengths differ.

An alignment is a list of position pairs ``(i, j)``: position ``i`` of prompt A stands for position
``j`` of prompt B. Pairs are strictly increasing in both coordinates (order is kept), and a position
appears in at most one pair; positions without a partner are listed as unmatched. The rules:

- ``"position"``: ``i`` with ``i`` (only for prompts of equal length; the rule ``auto`` picks then).
- ``"right"``: the ends meet, ``A[n_a - k]`` with ``B[n_b - k]`` for ``k = 1..min(n_a, n_b)``: the last
  tokens, where next-token predictions are read, always pair up.
- ``"left"``: the starts meet, ``A[k]`` with ``B[k]``.
- ``"prefix_suffix"``: the longest common prefix of equal tokens pairs up from the start, the longest
  common suffix (not overlapping the prefix) from the end; the differing middles pair position by
  position when they have equal lengths (a substituted word), and stay unmatched otherwise.
- ``"lcs"``: a longest common subsequence of equal tokens (exact dynamic programming, not difflib's
  heuristic); among several longest ones the earliest pairs in A win. Differing tokens never pair.
- ``"auto"`` (default): ``position`` for equal lengths, else ``prefix_suffix`` (which keeps the final
  positions paired whenever the prompts end alike).

Tokens are compared by id (both prompts go through the same tokenizer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ...errors import InputError
from ...views.result import Record

Rule = Literal["auto", "position", "right", "left", "prefix_suffix", "lcs"]
RULES: tuple[str, ...] = ("auto", "position", "right", "left", "prefix_suffix", "lcs")
_LCS_LIMIT = 1024  # tokens per prompt: the exact table is n_a x n_b, filled in Python


@dataclass(frozen=True)
class Alignment(Record):
    """Which position of prompt A stands for which position of prompt B."""

    json_keys = ("rule", "tokens_a", "tokens_b", "pairs", "unmatched_a", "unmatched_b")

    rule: str  # the rule applied (``auto`` resolved)
    tokens_a: list[str]
    tokens_b: list[str]
    pairs: list[tuple[int, int]]

    @property
    def unmatched_a(self) -> list[int]:
        matched = {i for i, _ in self.pairs}
        return [i for i in range(len(self.tokens_a)) if i not in matched]

    @property
    def unmatched_b(self) -> list[int]:
        matched = {j for _, j in self.pairs}
        return [j for j in range(len(self.tokens_b)) if j not in matched]

    def partner_of_a(self, i: int) -> int | None:
        return dict(self.pairs).get(i)

    def label(self, pair: tuple[int, int]) -> str:
        i, j = pair
        a, b = self.tokens_a[i], self.tokens_b[j]
        return f"{i} {a!r}" if (i == j and a == b) else f"{i} {a!r} | {j} {b!r}"


def align_ids(ids_a: Sequence[int], ids_b: Sequence[int], rule: str = "auto") -> tuple[str, list[tuple[int, int]]]:
    """(the rule applied, the position pairs) for two token-id sequences; see the module doc."""
    if rule not in RULES:
        raise InputError(f"unknown alignment '{rule}'; choose one of {', '.join(RULES)}")
    a, b = list(ids_a), list(ids_b)
    n_a, n_b = len(a), len(b)
    if rule == "auto":
        rule = "position" if n_a == n_b else "prefix_suffix"
    if rule == "position":
        if n_a != n_b:
            raise InputError(
                f"prompt A has {n_a} tokens and B {n_b}; 'position' alignment needs equal lengths, "
                "use 'right', 'left', 'prefix_suffix' or 'lcs'"
            )
        return rule, [(i, i) for i in range(n_a)]
    if rule == "left":
        return rule, [(k, k) for k in range(min(n_a, n_b))]
    if rule == "right":
        m = min(n_a, n_b)
        return rule, [(n_a - m + k, n_b - m + k) for k in range(m)]
    if rule == "prefix_suffix":
        return rule, _prefix_suffix(a, b)
    return rule, _lcs(a, b)


def _prefix_suffix(a: list[int], b: list[int]) -> list[tuple[int, int]]:
    n_a, n_b = len(a), len(b)
    prefix = 0
    while prefix < min(n_a, n_b) and a[prefix] == b[prefix]:
        prefix += 1
    suffix = 0
    while suffix < min(n_a, n_b) - prefix and a[n_a - 1 - suffix] == b[n_b - 1 - suffix]:
        suffix += 1
    pairs = [(k, k) for k in range(prefix)]
    middle_a, middle_b = n_a - prefix - suffix, n_b - prefix - suffix
    if middle_a == middle_b:
        pairs += [(prefix + k, prefix + k) for k in range(middle_a)]
    pairs += [(n_a - suffix + k, n_b - suffix + k) for k in range(suffix)]
    return pairs


def _lcs(a: list[int], b: list[int]) -> list[tuple[int, int]]:
    n_a, n_b = len(a), len(b)
    if max(n_a, n_b) > _LCS_LIMIT:
        raise InputError(f"'lcs' alignment takes prompts of at most {_LCS_LIMIT} tokens; use 'prefix_suffix'")
    x, y = np.asarray(a), np.asarray(b)
    # table[i, j]: LCS length of a[i:] and b[j:], filled backwards one row at a time.
    table = np.zeros((n_a + 1, n_b + 1), dtype=np.int32)
    for i in range(n_a - 1, -1, -1):
        equal = x[i] == y
        row = table[i]
        below = table[i + 1]
        for j in range(n_b - 1, -1, -1):
            row[j] = below[j + 1] + 1 if equal[j] else max(below[j], row[j + 1])
    pairs = []
    i = j = 0
    while i < n_a and j < n_b:
        if a[i] == b[j] and table[i, j] == table[i + 1, j + 1] + 1:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif table[i + 1, j] >= table[i, j + 1]:
            i += 1
        else:
            j += 1
    return pairs


def align(model, prompt_a: str, prompt_b: str, rule: str = "auto") -> Alignment:
    """Tokenize both prompts with ``model`` and align them by ``rule``."""
    ids_a = model.to_tokens(prompt_a)[0].tolist()
    ids_b = model.to_tokens(prompt_b)[0].tolist()
    applied, pairs = align_ids(ids_a, ids_b, rule)
    decode = model.tokenizer.decode
    return Alignment(applied, [decode([t]) for t in ids_a], [decode([t]) for t in ids_b], pairs)
