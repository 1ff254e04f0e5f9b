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
from dataclasses import dataclass, field
from typing import Any

import torch

from ...data import Corpus, batches, load_corpus, packed_sequences
from ...errors import InputError
from ...model.hooks import InterventionLike
from ...model.model import Model
from ...progress import progress
from ...views.figures import Bars, Figure, Heatmap
from ...views.html import figure_html
from ..metrics import kl_divergence
from .result import Change, finite, top_changes

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


@dataclass(frozen=True)
class SequenceChange:
    """One sequence (prompt) and how much the models' predictions on it differ."""

    index: int
    text: str
    kl: float  # mean over its positions
    loss_a: float
    loss_b: float

    def to_dict(self) -> dict:
        return {"index": self.index, "text": self.text, "kl": self.kl, "loss_a": self.loss_a, "loss_b": self.loss_b}


@dataclass(frozen=True)
class PositionChange:
    """One position where the next-token predictions differ most."""

    sequence: int
    position: int
    context: str  # the text up to and including the position (its end)
    kl: float
    top_a: str
    top_b: str

    def to_dict(self) -> dict:
        return {
            "sequence": self.sequence,
            "position": self.position,
            "context": self.context,
            "kl": self.kl,
            "top_a": self.top_a,
            "top_b": self.top_b,
        }


@dataclass(frozen=True)
class ModelComparison:
    model_a: str
    model_b: str
    source: str
    sequences: int
    tokens: int  # real tokens compared
    layers: list[tuple[int, int]]  # (layer of A, layer of B) per CKA value
    cka: list[float]
    kl: float  # mean KL(A || B) per position, nats
    loss_a: float
    loss_b: float
    head_distance: list[list[float]] | None  # [layer][head] mean TV distance; None if shapes differ
    top_heads: list[Change]
    top_sequences: list[SequenceChange]
    top_positions: list[PositionChange]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "kind": "compare_models",
            "model": self.model_a,
            "model_a": self.model_a,
            "model_b": self.model_b,
            "source": self.source,
            "sequences": self.sequences,
            "tokens": self.tokens,
            "cka": [
                {"layer_a": la, "layer_b": lb, "cka": finite(c)}
                for (la, lb), c in zip(self.layers, self.cka, strict=True)
            ],
            "kl": self.kl,
            "loss_a": self.loss_a,
            "loss_b": self.loss_b,
            "head_distance": self.head_distance,
            "top_heads": [c.to_dict() for c in self.top_heads],
            "top_sequences": [s.to_dict() for s in self.top_sequences],
            "top_positions": [p.to_dict() for p in self.top_positions],
            "notes": self.notes,
        }

    def figure(self) -> Figure:
        panels: list[Bars | Heatmap] = [
            Bars(
                "representation similarity per layer (linear CKA of resid_post; 1 = same up to rotation and scale)",
                [f"A L{la} / B L{lb}" for la, lb in self.layers],
                [c if math.isfinite(c) else 0.0 for c in self.cka],
                "CKA",
            )
        ]
        if self.head_distance is not None:
            panels.append(
                Heatmap(
                    "how much each head's attention changed (mean total-variation distance)",
                    self.head_distance,
                    [f"L{layer}" for layer in range(len(self.head_distance))],
                    [f"H{h}" for h in range(len(self.head_distance[0]))],
                    "layer",
                    "head",
                    "TV distance (0 = same, 1 = disjoint)",
                    cell_text=[[f"{v:.2f}" for v in row] for row in self.head_distance],
                )
            )
        if self.top_sequences:
            panels.append(
                Bars(
                    "sequences whose predictions changed most (mean KL)",
                    [s.text[:40] for s in self.top_sequences],
                    [s.kl for s in self.top_sequences],
                    "nats",
                    hover=[f"{s.text} | loss A {s.loss_a:.3f}, B {s.loss_b:.3f}" for s in self.top_sequences],
                )
            )
        if self.top_positions:
            panels.append(
                Bars(
                    "positions whose next-token prediction changed most (KL)",
                    [f"…{p.context[-30:]!r}: {p.top_a!r}->{p.top_b!r}" for p in self.top_positions],
                    [p.kl for p in self.top_positions],
                    "nats",
                )
            )
        extra = {
            "A": self.model_a,
            "B": self.model_b,
            "text": f"{self.source}, {self.sequences} sequences, {self.tokens} tokens",
            "loss": f"A {self.loss_a:.4f}, B {self.loss_b:.4f} nats/token",
            "KL(A || B)": f"{self.kl:.4f} nats/position",
        }
        for i, note in enumerate(self.notes):
            extra[f"note {i + 1}"] = note
        return Figure(
            f"{self.model_a} vs {self.model_b}",
            panels,
            what_you_see="How similar two models are inside (per layer), how differently they predict the same "
            "text, which attention heads changed, and which texts and positions changed most.",
            how_to_read="CKA compares the geometry of each layer's residual stream over the same tokens: 1 means "
            "the same up to a rotation and a uniform scale, lower means the representations were reshaped. KL is "
            "the extra surprise of B's predictions when A's are taken as the truth (0 = identical).",
            caveat="CKA is insensitive to rotations, so a model whose features moved to new directions can still "
            "score 1; a single corpus measures these differences on its kind of text only.",
            extra=extra,
        )

    def _repr_html_(self) -> str:
        return figure_html(self.figure())


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
    pairs = layer_pairs(model_a.n_layers, model_b.n_layers)
    same_heads = model_a.n_layers == model_b.n_layers and model_a.n_heads == model_b.n_heads
    notes = [] if same_heads else ["the models have different layer or head counts, so heads are not compared"]
    resid = "blocks.*.resid_post"
    cache = [resid, "blocks.*.attn.pattern"] if same_heads else [resid]
    cka = [CKAStats(model_a.d_model, model_b.d_model) for _ in pairs]
    head_sum = torch.zeros(model_a.n_layers, model_a.n_heads, dtype=torch.float64)
    queries = 0
    kl_sum, loss_a_sum, loss_b_sum, n_kl, n_loss, n_tokens, n_seqs = 0.0, 0.0, 0.0, 0, 0, 0, 0
    seq_rank: list[tuple[float, int, SequenceChange]] = []
    pos_rank: list[tuple[float, int, int, PositionChange]] = []
    decode = model_a.tokenizer.decode
    skip = 1 if model_a.tokenizer.bos_token_id is not None else 0
    for ids, mask in progress(stream, total=total, description="comparing models", unit="batch"):
        run_a = model_a.run(ids, cache=cache, attention_mask=mask)
        run_b = model_b.run(ids, cache=cache, attention_mask=mask, interventions=interventions_b)
        real = mask.bool()
        keep = real.clone()
        keep[:, :skip] = False
        n_tokens += int(real.sum())
        for stats, (la, lb) in zip(cka, pairs, strict=True):
            x = run_a.cache[f"blocks.{la}.resid_post"][keep.to(run_a.logits.device)]
            y = run_b.cache[f"blocks.{lb}.resid_post"][keep.to(run_b.logits.device)]
            stats.update(x, y)
        if same_heads:
            rows = real.clone()
            rows[:, 0] = False  # query 0 sees only itself
            queries += int(rows.sum())
            for layer in range(model_a.n_layers):
                pa = run_a.cache[f"blocks.{layer}.attn.pattern"].float().cpu()
                pb = run_b.cache[f"blocks.{layer}.attn.pattern"].float().cpu()
                tv = 0.5 * (pa - pb).abs().sum(-1)  # [batch, head, query]
                head_sum[layer] += (tv * rows[:, None, :]).sum((0, 2)).double()
        log_a = torch.log_softmax(run_a.logits.float(), dim=-1).cpu()
        log_b = torch.log_softmax(run_b.logits.float(), dim=-1).cpu()
        kl = kl_divergence(log_a, log_b) * real  # [batch, pos]
        targets = ids[:, 1:, None]
        next_real = (real[:, 1:] & real[:, :-1]).float()
        loss_a = -log_a[:, :-1].gather(-1, targets)[..., 0] * next_real
        loss_b = -log_b[:, :-1].gather(-1, targets)[..., 0] * next_real
        kl_sum += float(kl.sum())
        loss_a_sum += float(loss_a.sum())
        loss_b_sum += float(loss_b.sum())
        n_kl += int(real.sum())
        n_loss += int(next_real.sum())
        top_a, top_b = log_a.argmax(-1), log_b.argmax(-1)
        for row in range(ids.shape[0]):
            length = int(real[row].sum())
            counted = max(1, int(next_real[row].sum()))
            change = SequenceChange(
                n_seqs,
                decode(ids[row, skip:length].tolist())[:_SNIPPET],
                float(kl[row].sum()) / length,
                float(loss_a[row].sum()) / counted,
                float(loss_b[row].sum()) / counted,
            )
            _keep_top(seq_rank, (change.kl, n_seqs, change), top)
            values, where = kl[row, :length].topk(min(top, length))
            for value, position in zip(values.tolist(), where.tolist(), strict=True):
                context = decode(ids[row, max(skip, position - 7) : position + 1].tolist())
                item = PositionChange(
                    n_seqs,
                    position,
                    context,
                    value,
                    decode([int(top_a[row, position])]),
                    decode([int(top_b[row, position])]),
                )
                _keep_top(pos_rank, (value, n_seqs, position, item), top)
            n_seqs += 1
    if n_kl == 0:
        raise InputError("no text to compare: the corpus gave no sequences; use more text or a shorter seq_len")
    head_distance = (head_sum / max(queries, 1)).tolist() if same_heads else None
    top_heads = []
    if head_distance is not None:
        top_heads = top_changes(
            [Change(f"L{lay}H{h}", None, None, v) for lay, row in enumerate(head_distance) for h, v in enumerate(row)],
            top,
        )
    return ModelComparison(
        model_a=model_a.name,
        model_b=model_b.name + (" (with interventions)" if interventions_b else ""),
        source=source,
        sequences=n_seqs,
        tokens=n_tokens,
        layers=pairs,
        cka=[stats.value() for stats in cka],
        kl=kl_sum / n_kl,
        loss_a=loss_a_sum / max(n_loss, 1),
        loss_b=loss_b_sum / max(n_loss, 1),
        head_distance=head_distance,
        top_heads=top_heads,
        top_sequences=[item[-1].value for item in sorted(seq_rank, key=lambda t: t[:-1], reverse=True)],
        top_positions=[item[-1].value for item in sorted(pos_rank, key=lambda t: t[:-1], reverse=True)],
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


# ---------------------------------------------------------------------------------------------------
# Different tokenizers: the text only


@dataclass(frozen=True)
class GenerationComparison:
    model_a: str
    model_b: str
    max_new_tokens: int
    prompts: list[str]
    texts_a: list[str]
    texts_b: list[str]

    @property
    def common_prefix(self) -> list[int]:
        """Per prompt, how many characters the two continuations share from their start."""
        out = []
        for a, b in zip(self.texts_a, self.texts_b, strict=True):
            n = 0
            while n < min(len(a), len(b)) and a[n] == b[n]:
                n += 1
            out.append(n)
        return out

    def to_dict(self) -> dict:
        return {
            "kind": "compare_generations",
            "model": self.model_a,
            "model_a": self.model_a,
            "model_b": self.model_b,
            "max_new_tokens": self.max_new_tokens,
            "rows": [
                {"prompt": p, "a": a, "b": b, "identical": a == b, "common_prefix_chars": n}
                for p, a, b, n in zip(self.prompts, self.texts_a, self.texts_b, self.common_prefix, strict=True)
            ],
        }

    def figure(self) -> Figure:
        extra = {}
        for i, (p, a, b) in enumerate(zip(self.prompts, self.texts_a, self.texts_b, strict=True)):
            extra[f"{i + 1}. {p!r}"] = f"A: {a!r} | B: {b!r}"
        return Figure(
            f"{self.model_a} vs {self.model_b}: continuations side by side",
            [
                Bars(
                    "characters the continuations share from their start",
                    [p[:40] for p in self.prompts],
                    [float(n) for n in self.common_prefix],
                    "characters",
                )
            ],
            what_you_see="Each model's greedy continuation of the same prompts, and how long they agree.",
            how_to_read="The models read text with different tokenizers, so only their text can be compared; "
            "a long shared start means they continue alike.",
            caveat="Greedy text from a few prompts is a thin sample of behaviour; it says nothing about the "
            "models' internals.",
            extra=extra,
        )

    def _repr_html_(self) -> str:
        return figure_html(self.figure())


def compare_generations(
    model_a: Model, model_b: Model, prompts: Sequence[str], *, max_new_tokens: int = 20
) -> GenerationComparison:
    """Greedy continuations of ``prompts`` by both models, side by side (any two models, any tokenizers)."""
    if not prompts:
        raise InputError("no prompts given; pass at least one prompt")
    if not 1 <= max_new_tokens <= 512:
        raise InputError(f"max_new_tokens must be in 1..512, got {max_new_tokens}")
    texts_a = [model_a.generate(p, max_new_tokens=max_new_tokens).completion for p in prompts]
    texts_b = [model_b.generate(p, max_new_tokens=max_new_tokens).completion for p in prompts]
    return GenerationComparison(model_a.name, model_b.name, max_new_tokens, list(prompts), texts_a, texts_b)
