"""Head roles: previous-token, induction, duplicate-token and attention-sink scores for every head.

Scores are measured on generated sequences of repeated random tokens, ``[BOS, r_1..r_n, r_1..r_n]``
(the ``r_i`` distinct within a sequence, drawn with a seed from the tokenizer's ordinary tokens), where
each role has an unambiguous target, and optionally on the user's prompt. Each score is the mean
attention weight a head puts on its role's target, so it lies in [0, 1]; 1 means the head does only
that. See Olsson et al. 2022 ("In-context Learning and Induction Heads") for the roles.

Definitions on the generated sequences (``p`` = 1 if there is a BOS, else 0; the second copy
occupies positions ``p+n .. p+2n-1``; means are over every sequence and the stated queries):

- ``previous_token``: attention from query ``q`` to ``q-1``, over queries ``2..end`` (query 1's
  previous token is position 0, which sink heads attend to anyway, so it is left out).
- ``induction``: attention from each query ``q`` of the second copy to ``q-n+1``, the token that
  FOLLOWED the earlier copy of ``q``'s token (what an induction head copies forward).
- ``duplicate_token``: attention from each query of the second copy to ``q-n``, the earlier copy of
  its own token.
- ``sink``: attention to position 0 (BOS), over queries ``1..end``.

On a prompt the same roles are scored with its own tokens: ``duplicate_token`` is, for each query
whose token occurred before, the total attention on all earlier occurrences; ``induction`` the total
attention on the tokens right after them; both are averaged over such queries only, and are absent
when the prompt repeats no token.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ...errors import InputError
from ...model.model import Model
from ...progress import progress
from ...views.explanations import explanation
from ...views.figures import Figure, Heatmap
from ...views.result import Result
from .attention import all_patterns, sliding_windows

ROLES = ("previous_token", "induction", "duplicate_token", "sink")
ROLE_TITLES = {
    "previous_token": "previous-token: attention to the token just before",
    "induction": "induction: attention to the token after the earlier copy of the current token",
    "duplicate_token": "duplicate-token: attention to the earlier copy of the current token",
    "sink": "attention sink: attention to the first token",
}


@dataclass(frozen=True)
class HeadRoles(Result):
    """Role scores ([layer, head] tensors in [0, 1]) on repeated random tokens and, if given, on a prompt."""

    kind = "head_roles"
    json_keys = ("model", "seq_len", "n_seqs", "seed", "random", "prompt", "prompt_tokens", "on_prompt", "notes")

    model: str
    seq_len: int  # n: length of each random half
    n_seqs: int
    seed: int
    scores: dict[str, torch.Tensor]  # role -> [layer, head], on the generated sequences
    prompt: str | None = None
    prompt_tokens: list[str] = field(default_factory=list)
    prompt_scores: dict[str, torch.Tensor | None] = field(default_factory=dict)  # None: the prompt cannot say
    notes: list[str] = field(default_factory=list)

    def top(self, role: str, k: int = 5, *, on_prompt: bool = False) -> list[tuple[int, int, float]]:
        """The ``k`` highest-scoring heads for ``role`` as (layer, head, score), best first."""
        if role not in ROLES:
            raise InputError(f"unknown role '{role}'; use one of {', '.join(ROLES)}")
        scores = self.prompt_scores.get(role) if on_prompt else self.scores[role]
        if scores is None:
            return []
        values, indices = scores.flatten().topk(min(k, scores.numel()))
        n_heads = scores.shape[1]
        return [(int(i) // n_heads, int(i) % n_heads, float(v)) for v, i in zip(values, indices, strict=True)]

    def figure(self) -> Figure:
        panels = []
        sources = [(f"on {self.n_seqs} repeated random sequences", self.scores)]
        if self.prompt is not None:
            sources.append(("on your prompt", self.prompt_scores))
        for where, scores in sources:
            for role in ROLES:
                values = scores.get(role)
                if values is None:
                    continue
                n_layers, n_heads = values.shape
                panels.append(
                    Heatmap(
                        f"{ROLE_TITLES[role]} ({where})",
                        values.tolist(),
                        [f"L{layer}" for layer in range(n_layers)],
                        [f"H{head}" for head in range(n_heads)],
                        "layer",
                        "head",
                        "mean attention on the target",
                        cell_text=[[f"{v:.2f}" for v in row] for row in values.tolist()],
                    )
                )
        extra = {
            f"top {role}": ", ".join(f"L{layer}H{head} {score:.2f}" for layer, head, score in self.top(role, 3))
            for role in ROLES
        }
        extra["sequences"] = f"{self.n_seqs} x [BOS, {self.seq_len} random tokens, the same again], seed {self.seed}"
        for i, note in enumerate(self.notes):
            extra[f"note {i + 1}"] = note
        return Figure(
            f"{self.model}: what the attention heads are for",
            panels,
            **explanation("head_roles"),
            extra=extra,
        )

    def _json_random(self) -> dict:
        return self._role_table(self.scores, on_prompt=False)

    def _json_on_prompt(self) -> dict | None:
        return self._role_table(self.prompt_scores, on_prompt=True) if self.prompt is not None else None

    def _role_table(self, scores: dict[str, torch.Tensor | None], *, on_prompt: bool) -> dict:
        """Per role: every head's score and the top heads (None where the prompt cannot say)."""
        return {
            role: None
            if scores.get(role) is None
            else {
                "scores": scores[role],
                "top": [
                    {"layer": layer, "head": head, "score": score}
                    for layer, head, score in self.top(role, on_prompt=on_prompt)
                ],
            }
            for role in ROLES
        }


def ordinary_token_ids(model: Model) -> torch.Tensor:
    """Token ids to draw random sequences from: the tokenizer's vocabulary minus special and added tokens."""
    size = min(model.vocab_size, len(model.tokenizer))
    excluded = set(model.tokenizer.all_special_ids) | set(model.tokenizer.added_tokens_decoder)
    keep = torch.ones(size, dtype=torch.bool)
    keep[[i for i in excluded if i < size]] = False
    return keep.nonzero()[:, 0]


def repeated_random_tokens(model: Model, seq_len: int, n_seqs: int, seed: int) -> torch.Tensor:
    """[n_seqs, p + 2 seq_len]: ``[BOS, r_1..r_n, r_1..r_n]`` with distinct ``r_i`` per sequence (seeded).

    Without a BOS token in the tokenizer the sequences start directly with ``r_1`` (p = 0).
    """
    pool = ordinary_token_ids(model)
    if seq_len < 2:
        raise InputError(f"seq-len must be at least 2 (each random half needs a token after the first), got {seq_len}")
    if seq_len > len(pool):
        raise InputError(f"seq-len {seq_len} exceeds the {len(pool)} ordinary tokens of the vocabulary; lower it")
    if n_seqs < 1:
        raise InputError(f"n-seqs must be at least 1, got {n_seqs}")
    generator = torch.Generator().manual_seed(seed)
    halves = torch.stack([pool[torch.randperm(len(pool), generator=generator)[:seq_len]] for _ in range(n_seqs)])
    rows = [halves, halves]
    bos = model.tokenizer.bos_token_id
    if bos is not None:
        rows.insert(0, torch.full((n_seqs, 1), bos, dtype=torch.long))
    return torch.cat(rows, dim=1)


def _repeated_sums(pattern: torch.Tensor, n: int) -> dict[str, torch.Tensor]:
    """[head] sums over batch and the role's queries of the weight on each role's target (see module doc).

    Diagonal ``-d`` of the pattern holds the weights from query ``q`` to ``q-d``; its last ``n`` entries
    are the queries of the second copy, whatever the prefix.
    """
    pattern = pattern.float()
    return {
        "previous_token": pattern.diagonal(offset=-1, dim1=-2, dim2=-1)[..., 1:].sum((0, -1)),
        "induction": pattern.diagonal(offset=-(n - 1), dim1=-2, dim2=-1)[..., -n:].sum((0, -1)),
        "duplicate_token": pattern.diagonal(offset=-n, dim1=-2, dim2=-1)[..., -n:].sum((0, -1)),
        "sink": pattern[:, :, 1:, 0].sum((0, -1)),
    }


def _prompt_scores(patterns: torch.Tensor, ids: torch.Tensor) -> dict[str, torch.Tensor | None]:
    """Role scores [layer, head] from one prompt's patterns [layer, head, query, key] and its ids [pos]."""
    n = ids.shape[0]
    earlier = torch.ones(n, n, dtype=torch.bool).tril(-1)  # key < query
    same = (ids[:, None] == ids[None, :]) & earlier  # [query, key]: an earlier copy of the query's token
    after_copy = torch.zeros_like(same)
    after_copy[:, 1:] = same[:, :-1]  # key k follows an earlier copy (at k-1) of the query's token
    has_copy = same.any(-1)
    scores: dict[str, torch.Tensor | None] = {
        "previous_token": patterns.diagonal(offset=-1, dim1=-2, dim2=-1)[..., 1:].mean(-1) if n >= 3 else None,
        "sink": patterns[:, :, 1:, 0].mean(-1),
        "induction": None,
        "duplicate_token": None,
    }
    if has_copy.any():
        rows = patterns[:, :, has_copy]  # [layer, head, queries with a copy, key]
        scores["duplicate_token"] = (rows * same[has_copy]).sum(-1).mean(-1)
        scores["induction"] = (rows * after_copy[has_copy]).sum(-1).mean(-1)
    return scores


def head_roles(
    model: Model,
    prompt: str | None = None,
    *,
    seq_len: int = 50,
    n_seqs: int = 16,
    seed: int = 0,
    batch_size: int = 16,
) -> HeadRoles:
    """Previous-token, induction, duplicate-token and sink scores for every head (see the module doc).

    ``n_seqs`` sequences of ``[BOS, n random tokens, the same n again]`` (``n = seq_len``) are run in
    batches of ``batch_size`` (one forward pass per batch, patterns only, no unembedding); ``prompt``,
    if given, is scored too.
    """
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    tokens = repeated_random_tokens(model, seq_len, n_seqs, seed)
    names = [f"blocks.{layer}.attn.pattern" for layer in range(model.n_layers)]
    totals = {role: torch.zeros(model.n_layers, model.n_heads) for role in ROLES}
    chunks = list(tokens.split(batch_size))
    for chunk in progress(chunks, description="head roles", unit="batch"):
        run = model.run(chunk, cache=names, logits=False)
        for layer, name in enumerate(names):
            for role, value in _repeated_sums(run.cache[name], seq_len).items():
                totals[role][layer] += value.cpu()
    length = tokens.shape[1]
    counts = {
        "previous_token": n_seqs * (length - 2),
        "induction": n_seqs * seq_len,
        "duplicate_token": n_seqs * seq_len,
        "sink": n_seqs * (length - 1),
    }
    scores = {role: totals[role] / counts[role] for role in ROLES}
    notes = []
    blind = sorted({w for w in sliding_windows(model) if w is not None and w <= seq_len})
    if blind:
        notes.append(
            f"layers with a sliding window of {blind[0]} tokens cannot see the earlier copy {seq_len} tokens back: "
            "their duplicate-token (and, for windows under that, induction) scores are 0 by construction; "
            "lower --seq-len"
        )
    result_prompt: dict = {}
    if prompt is not None:
        ids, patterns = all_patterns(model, prompt)
        if ids.shape[0] < 2:
            raise InputError("the prompt has one token; head roles need at least two, so add some text")
        result_prompt = {
            "prompt": prompt,
            "prompt_tokens": [model.tokenizer.decode([int(t)]) for t in ids],
            "prompt_scores": _prompt_scores(patterns, ids),
        }
        if result_prompt["prompt_scores"]["induction"] is None:
            notes.append(
                "your prompt repeats no token, so it cannot score induction or duplicate-token heads "
                "(they need repeated tokens); the random sequences do"
            )
        if result_prompt["prompt_scores"]["previous_token"] is None:
            notes.append("your prompt is too short (under 3 tokens) to score previous-token heads")
    return HeadRoles(
        model=model.name, seq_len=seq_len, n_seqs=n_seqs, seed=seed, scores=scores, notes=notes, **result_prompt
    )
