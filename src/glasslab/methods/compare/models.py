"""Two models with the same tokenizer (a base and its fine-tune, a model before and after an edit).

On the same token sequences (a corpus, streamed in batches, or the user's prompts), one forward pass
of each model per batch gives:

- per layer, the linear CKA (Kornblith et al. 2019) of ``blocks.{L}.resid_post``:
  ``||Xc^T Yc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` over tokens (rows), ``Xc``/``Yc`` centred over
  tokens. It is accumulated from running sums (``X^T X``, ``Y^T Y``, ``X^T Y``, column sums), so memory
  does not grow with the corpus. Position 0 (BOS) is left out: its activations are huge outliers in many
  models and would dominate the score. Models with different layer counts pair layers by relative depth
  (layer ``i`` of A with ``round(i (L_B - 1) / (L_A - 1))`` of B).
- KL(A || B) of the next-token distributions at every real position, and each model's loss (mean
  cross-entropy of every real token after the first, predicted from the ones before it).
- per head (same layer and head counts), the mean total-variation distance between the two models'
  attention rows over real query positions after the first: which heads' attention changed most.
- the sequences and the positions where the predictions moved most (largest KL).

``interventions_b`` applies interventions to model B's runs only, so one loaded model can be compared
with itself under a steering vector or an ablation.

Models whose tokenizers differ cannot be compared token by token: ``compare_models`` raises a one-line
error and ``compare_generations`` puts their continuations side by side instead.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from ...data import Corpus, batches, load_corpus, packed_sequences
from ...errors import InputError
from ...model.hooks import InterventionLike
from ...model.model import Model
from ...progress import progress
from ..metrics import kl_divergence
from .generations import GenerationComparison, compare_generations
from .models_result import ModelComparison, PositionChange, SequenceChange
from .result import Change, top_changes

__all__ = [
    "CKAStats",
    "GenerationComparison",
    "ModelComparison",
    "PositionChange",
    "SequenceChange",
    "check_comparable",
    "compare_generations",
    "compare_models",
    "layer_pairs",
    "linear_cka",
    "same_tokenizer",
]

_SNIPPET = 80  # characters of a sequence shown in rankings


def same_tokenizer(model_a: Model, model_b: Model) -> bool:
    """Whether both models read text as the same token ids (same vocabulary and BOS)."""
    if model_a.tokenizer is model_b.tokenizer:
        return True
    return (
        model_a.tokenizer.bos_token_id == model_b.tokenizer.bos_token_id
        and model_a.tokenizer.get_vocab() == model_b.tokenizer.get_vocab()
    )


def check_comparable(model_a: Model, model_b: Model) -> None:
    if not same_tokenizer(model_a, model_b):
        raise InputError(
            f"{model_a.name} and {model_b.name} use different tokenizers, so their tokens and layers cannot be "
            "compared one to one; compare their text instead (compare_generations, or --text in the CLI)"
        )
    if model_a.vocab_size != model_b.vocab_size:
        raise InputError(
            f"{model_a.name} predicts over {model_a.vocab_size} tokens and {model_b.name} over "
            f"{model_b.vocab_size}; output KL needs the same vocabulary"
        )


def layer_pairs(n_a: int, n_b: int) -> list[tuple[int, int]]:
    """Layer ``i`` of A with the same layer of B, or with the layer at the same relative depth."""
    if n_a == n_b:
        return [(i, i) for i in range(n_a)]
    if n_a == 1:
        return [(0, n_b - 1)]
    return [(i, round(i * (n_b - 1) / (n_a - 1))) for i in range(n_a)]


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two [tokens, features] matrices (the direct formula, for small inputs and tests)."""
    stats = CKAStats(x.shape[1], y.shape[1])
    stats.update(x, y)
    return stats.value()


class CKAStats:
    """Running sums for linear CKA between two streams of [tokens, features] activations (float64)."""

    def __init__(self, d_x: int, d_y: int) -> None:
        self.n = 0
        self.sum_x = torch.zeros(d_x, dtype=torch.float64)
        self.sum_y = torch.zeros(d_y, dtype=torch.float64)
        self.xx = torch.zeros(d_x, d_x, dtype=torch.float64)
        self.yy = torch.zeros(d_y, d_y, dtype=torch.float64)
        self.xy = torch.zeros(d_x, d_y, dtype=torch.float64)

    def update(self, x: torch.Tensor, y: torch.Tensor) -> None:
        x, y = x.detach().double().cpu(), y.detach().double().cpu()
        self.n += x.shape[0]
        self.sum_x += x.sum(0)
        self.sum_y += y.sum(0)
        self.xx += x.T @ x
        self.yy += y.T @ y
        self.xy += x.T @ y

    def value(self) -> float:
        if self.n < 2:
            raise InputError("CKA needs at least two tokens")
        n = self.n
        xy = self.xy - torch.outer(self.sum_x, self.sum_y) / n
        xx = self.xx - torch.outer(self.sum_x, self.sum_x) / n
        yy = self.yy - torch.outer(self.sum_y, self.sum_y) / n
        denominator = float(xx.norm() * yy.norm())
        if denominator == 0.0:
            return math.nan  # a constant representation has no similarity structure
        return float(xy.norm() ** 2 / denominator)


def _batches(
    model: Model, corpus: str | Corpus | None, prompts: Sequence[str] | None, sequences: int, seq_len: int, size: int
) -> tuple[Iterator[tuple[torch.Tensor, torch.Tensor]], int, str]:
    """(batches of (token ids, mask), number of batches, description of the text)."""
    if prompts is not None:
        if corpus is not None:
            raise InputError("give a corpus or prompts to compare on, not both")
        if not prompts:
            raise InputError("no prompts given; pass at least one prompt")
        chunks = [list(prompts)[i : i + size] for i in range(0, len(prompts), size)]

        def from_prompts() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            for chunk in chunks:
                tokens = model.tokenize(chunk)
                yield tokens.input_ids, tokens.attention_mask

        return from_prompts(), len(chunks), f"{len(prompts)} prompts"
    if sequences < 1:
        raise InputError(f"sequences must be at least 1, got {sequences}")
    text = corpus if isinstance(corpus, Corpus) else load_corpus(corpus or "builtin")
    stream = batches(packed_sequences(model, text, seq_len, limit=sequences), size)
    return ((b, torch.ones_like(b)) for b in stream), math.ceil(sequences / size), f"corpus {text.describe()}"


def compare_models(
    model_a: Model,
    model_b: Model,
    *,
    corpus: str | Corpus | None = None,
    prompts: Sequence[str] | None = None,
    sequences: int = 16,
    seq_len: int = 64,
    batch_size: int = 4,
    top: int = 10,
    interventions_b: Sequence[InterventionLike] = (),
) -> ModelComparison:
    """Compare two models with the same tokenizer on a corpus (default ``builtin``: ``sequences`` packed
    sequences of ``seq_len`` tokens) or on ``prompts``; see the module doc for every measure."""
    check_comparable(model_a, model_b)
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    if not 1 <= top <= 1000:
        raise InputError(f"top must be in 1..1000, got {top}")
    stream, total, source = _batches(model_a, corpus, prompts, sequences, seq_len, batch_size)
    same_heads = model_a.n_layers == model_b.n_layers and model_a.n_heads == model_b.n_heads
    notes = [] if same_heads else ["the models have different layer or head counts, so heads are not compared"]
    resid = "blocks.*.resid_post"
    cache = [resid, "blocks.*.attn.pattern"] if same_heads else [resid]
    tally = _Tally(model_a, model_b, same_heads, top)
    for ids, mask in progress(stream, total=total, description="comparing models", unit="batch"):
        run_a = model_a.run(ids, cache=cache, attention_mask=mask)
        run_b = model_b.run(ids, cache=cache, attention_mask=mask, interventions=interventions_b)
        tally.add(ids, mask.bool(), run_a, run_b)
    if tally.n_kl == 0:
        raise InputError("no text to compare: the corpus gave no sequences; use more text or a shorter seq_len")
    name_b = model_b.name + (" (with interventions)" if interventions_b else "")
    return tally.result(model_a.name, name_b, source, notes)


class _Tally:
    """Running totals of every measure over the batches, so memory does not grow with the corpus."""

    def __init__(self, model_a: Model, model_b: Model, same_heads: bool, top: int) -> None:
        self.pairs = layer_pairs(model_a.n_layers, model_b.n_layers)
        self.same_heads = same_heads
        self.top = top
        self.cka = [CKAStats(model_a.d_model, model_b.d_model) for _ in self.pairs]
        self.head_sum = torch.zeros(model_a.n_layers, model_a.n_heads, dtype=torch.float64)
        self.queries = 0
        self.kl_sum, self.loss_a_sum, self.loss_b_sum = 0.0, 0.0, 0.0
        self.n_kl, self.n_loss, self.n_tokens, self.n_seqs = 0, 0, 0, 0
        self.seq_rank: list[tuple[float, int, SequenceChange]] = []
        self.pos_rank: list[tuple[float, int, int, PositionChange]] = []
        self.decode = model_a.tokenizer.decode
        self.skip = 1 if model_a.tokenizer.bos_token_id is not None else 0

    def add(self, ids: torch.Tensor, real: torch.Tensor, run_a: Any, run_b: Any) -> None:
        """Add one batch; ``real`` marks its real (not padding) tokens."""
        self.n_tokens += int(real.sum())
        self._add_cka(real, run_a, run_b)
        if self.same_heads:
            self._add_heads(real, run_a, run_b)
        log_a = torch.log_softmax(run_a.logits.float(), dim=-1).cpu()
        log_b = torch.log_softmax(run_b.logits.float(), dim=-1).cpu()
        kl = kl_divergence(log_a, log_b) * real  # [batch, pos]
        targets = ids[:, 1:, None]
        next_real = (real[:, 1:] & real[:, :-1]).float()
        loss_a = -log_a[:, :-1].gather(-1, targets)[..., 0] * next_real
        loss_b = -log_b[:, :-1].gather(-1, targets)[..., 0] * next_real
        self.kl_sum += float(kl.sum())
        self.loss_a_sum += float(loss_a.sum())
        self.loss_b_sum += float(loss_b.sum())
        self.n_kl += int(real.sum())
        self.n_loss += int(next_real.sum())
        top_a, top_b = log_a.argmax(-1), log_b.argmax(-1)
        for row in range(ids.shape[0]):
            length = int(real[row].sum())
            counted = max(1, int(next_real[row].sum()))
            change = SequenceChange(
                self.n_seqs,
                self.decode(ids[row, self.skip : length].tolist())[:_SNIPPET],
                float(kl[row].sum()) / length,
                float(loss_a[row].sum()) / counted,
                float(loss_b[row].sum()) / counted,
            )
            _keep_top(self.seq_rank, (change.kl, self.n_seqs, change), self.top)
            self._rank_positions(ids[row], kl[row, :length], top_a[row], top_b[row])
            self.n_seqs += 1

    def _add_cka(self, real: torch.Tensor, run_a: Any, run_b: Any) -> None:
        keep = real.clone()
        keep[:, : self.skip] = False  # BOS activations are outliers that would dominate the score
        for stats, (la, lb) in zip(self.cka, self.pairs, strict=True):
            x = run_a.cache[f"blocks.{la}.resid_post"][keep.to(run_a.logits.device)]
            y = run_b.cache[f"blocks.{lb}.resid_post"][keep.to(run_b.logits.device)]
            stats.update(x, y)

    def _add_heads(self, real: torch.Tensor, run_a: Any, run_b: Any) -> None:
        rows = real.clone()
        rows[:, 0] = False  # query 0 sees only itself
        self.queries += int(rows.sum())
        for layer in range(self.head_sum.shape[0]):
            pa = run_a.cache[f"blocks.{layer}.attn.pattern"].float().cpu()
            pb = run_b.cache[f"blocks.{layer}.attn.pattern"].float().cpu()
            tv = 0.5 * (pa - pb).abs().sum(-1)  # [batch, head, query]
            self.head_sum[layer] += (tv * rows[:, None, :]).sum((0, 2)).double()

    def _rank_positions(self, ids: torch.Tensor, kl: torch.Tensor, top_a: torch.Tensor, top_b: torch.Tensor) -> None:
        """Offer one sequence's positions (``kl`` over its real tokens) to the ranking of changed positions."""
        values, where = kl.topk(min(self.top, kl.shape[0]))
        for value, position in zip(values.tolist(), where.tolist(), strict=True):
            context = self.decode(ids[max(self.skip, position - 7) : position + 1].tolist())
            item = PositionChange(
                self.n_seqs,
                position,
                context,
                value,
                self.decode([int(top_a[position])]),
                self.decode([int(top_b[position])]),
            )
            _keep_top(self.pos_rank, (value, self.n_seqs, position, item), self.top)

    def result(self, name_a: str, name_b: str, source: str, notes: list[str]) -> ModelComparison:
        head_distance = (self.head_sum / max(self.queries, 1)).tolist() if self.same_heads else None
        top_heads = []
        if head_distance is not None:
            top_heads = top_changes(
                [
                    Change(f"L{lay}H{h}", None, None, v)
                    for lay, row in enumerate(head_distance)
                    for h, v in enumerate(row)
                ],
                self.top,
            )
        return ModelComparison(
            model_a=name_a,
            model_b=name_b,
            source=source,
            sequences=self.n_seqs,
            tokens=self.n_tokens,
            layers=self.pairs,
            cka=[stats.value() for stats in self.cka],
            kl=self.kl_sum / self.n_kl,
            loss_a=self.loss_a_sum / max(self.n_loss, 1),
            loss_b=self.loss_b_sum / max(self.n_loss, 1),
            head_distance=head_distance,
            top_heads=top_heads,
            top_sequences=[item[-1].value for item in sorted(self.seq_rank, key=lambda t: t[:-1], reverse=True)],
            top_positions=[item[-1].value for item in sorted(self.pos_rank, key=lambda t: t[:-1], reverse=True)],
            notes=notes,
        )


def _keep_top(heap: list, item: tuple, k: int) -> None:
    """Keep the ``k`` largest items (by their leading fields) in a min-heap."""
    key = item[:-1]
    if len(heap) < k:
        heapq.heappush(heap, (*key, _Boxed(item[-1])))
    elif key > heap[0][:-1]:
        heapq.heapreplace(heap, (*key, _Boxed(item[-1])))


class _Boxed:
    """Wraps a heap payload so ties in the keys never compare payloads."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: _Boxed) -> bool:
        return False
