"""Where each head attends: every head's pattern, per-head summaries, and what one query token reads.

The patterns come from ``model.run(cache=["blocks.*.attn.pattern"])``, which runs the family's own
eager attention with its own masks, so sliding windows, soft-capping and grouped-query attention are
the model's. Grouped-query models share keys between query heads, but every query head has its own
pattern: results always have ``model.n_heads`` heads per layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ...errors import InputError
from ...model.model import Model
from ...model.run import Run
from ...views.explanations import explanation
from ...views.figures import Figure, Heatmap
from ...views.result import Record, Result

# The HTML/PNG grid of one pattern shows at most this many positions (the last ones); results keep all.
SHOWN_POSITIONS = 64


@dataclass(frozen=True)
class KeyRead:
    """One key position a head reads from, at the selected query."""

    position: int
    token: str
    weight: float


@dataclass(frozen=True)
class HeadSummary(Record):
    """One head's pattern in four numbers, each a mean over query positions ``1..n-1``.

    Query 0 is left out: it can only attend to itself, so its row is always ``[1]`` and says nothing.

    - ``row_max``: mean over queries of the largest weight in the row (1 = every query puts all its
      attention on one key; ``1/(q+1)`` at query ``q`` = uniform).
    - ``entropy``: mean over queries of the row's entropy ``-sum_k a_k ln a_k``, in nats (0 = one key;
      ``ln(q+1)`` = uniform over the ``q+1`` visible keys), with ``0 ln 0 = 0``.
    - ``distance``: mean over queries of the expected distance back, ``sum_k a_k (q - k)``, in tokens
      (0 = attends to itself, 1 = to the previous token).
    - ``first_token``: mean over queries of the weight on position 0 (BOS when the tokenizer has one):
      high values mark "attention sink" heads that park their attention there when they have nothing to do.
    """

    json_keys = ("layer", "head", "row_max", "entropy_nats", "distance", "first_token")

    layer: int
    head: int
    row_max: float
    entropy: float
    distance: float
    first_token: float

    def _json_entropy_nats(self) -> float:
        return self.entropy


@dataclass(frozen=True)
class Attention(Result):
    """Every head's attention pattern on one prompt, per-head summaries, and what one query token reads."""

    kind = "attention"
    json_keys = (
        "model",
        "prompt",
        "tokens",
        "n_layers",
        "n_heads",
        "layer",
        "head",
        "query_position",
        "query_token",
        "sliding_windows",
        "summaries",
        "reads",
        "pattern",
    )

    model: str
    prompt: str
    tokens: list[str]
    layer: int  # the selected head
    head: int
    query_position: int  # absolute position of the selected query token
    summaries: list[HeadSummary]  # every layer x head, layer-major
    reads: list[list[list[KeyRead]]]  # [layer][head] -> the top keys of the selected query, heaviest first
    sliding_windows: list[int | None]  # per layer: the window size, or None for full causal attention
    patterns: torch.Tensor = field(repr=False)  # [layer, head, query, key], float32 on the CPU

    def pattern(self, layer: int, head: int) -> torch.Tensor:
        """[query, key]: one head's pattern."""
        return self.patterns[layer, head]

    def summary(self, layer: int, head: int) -> HeadSummary:
        return self.summaries[layer * self.patterns.shape[1] + head]

    def figure(self) -> Figure:
        n_layers, n_heads, n, _ = self.patterns.shape
        layers = [f"L{layer}" for layer in range(n_layers)]
        heads = [f"H{head}" for head in range(n_heads)]

        def grid(attribute: str) -> list[list[float]]:
            return [[getattr(self.summary(lay, h), attribute) for h in range(n_heads)] for lay in range(n_layers)]

        def hover(lay: int, h: int) -> str:
            s = self.summary(lay, h)
            return (
                f"L{lay}H{h}: row max {s.row_max:.3f}, entropy {s.entropy:.3f} nats, "
                f"distance {s.distance:.2f} tokens, first token {s.first_token:.3f}"
            )

        hovers = [[hover(lay, h) for h in range(n_heads)] for lay in range(n_layers)]
        panels = []
        for attribute, title, label in (
            ("row_max", "how focused each head is: mean of each query's largest weight", "mean row max"),
            ("first_token", "how much each head parks on the first token", "mean weight on position 0"),
        ):
            values = grid(attribute)
            panels.append(
                Heatmap(
                    title,
                    values,
                    layers,
                    heads,
                    "layer",
                    "head",
                    label,
                    cell_text=[[f"{v:.2f}" for v in row] for row in values],
                    hover=hovers,
                )
            )
        start = max(0, n - SHOWN_POSITIONS)
        labels = [f"{p} {self.tokens[p]!r}" for p in range(n)]
        chosen = self.pattern(self.layer, self.head)
        panels.append(
            Heatmap(
                f"L{self.layer}H{self.head}: attention of every query (row) to every key (column)",
                chosen[start:, start:].tolist(),
                labels[start:],
                labels[start:],
                "query token",
                "key token",
                "attention weight",
                hover=[
                    [f"{labels[q]} reads {labels[k]}: {float(chosen[q, k]):.4f}" for k in range(start, n)]
                    for q in range(start, n)
                ],
            )
        )
        q = self.query_position
        first = max(0, q + 1 - SHOWN_POSITIONS)
        row = self.patterns[self.layer, :, q, first : q + 1]
        panels.append(
            Heatmap(
                f"what {labels[q]} reads in each head of layer {self.layer}",
                row.tolist(),
                heads,
                labels[first : q + 1],
                "head",
                "key token",
                "attention weight",
                cell_text=[[f"{float(v):.2f}" for v in r] for r in row],
            )
        )
        extra = {"tokens": str(n), "selected": f"layer {self.layer}, head {self.head}", "query": labels[q]}
        window = self.sliding_windows[self.layer]
        if window is not None:
            extra["window"] = f"layer {self.layer} attends to the last {window} tokens only"
        if start > 0:
            extra["shown"] = f"the last {SHOWN_POSITIONS} of {n} positions (the result keeps all)"
        return Figure(
            f"{self.model}: where the attention heads look",
            panels,
            **explanation("attention"),
            extra=extra,
        )

    def _json_n_layers(self) -> int:
        return self.patterns.shape[0]

    def _json_n_heads(self) -> int:
        return self.patterns.shape[1]

    def _json_query_token(self) -> str:
        return self.tokens[self.query_position]

    def _json_reads(self) -> list[dict]:
        return [
            {"layer": layer, "head": head, "keys": reads}
            for layer, per_layer in enumerate(self.reads)
            for head, reads in enumerate(per_layer)
        ]

    def _json_pattern(self) -> torch.Tensor:
        """Only the selected head's pattern (every head's would be layers x heads x tokens^2 numbers)."""
        return self.pattern(self.layer, self.head)


def sliding_windows(model: Model) -> list[int | None]:
    """Per layer, the sliding window the config gives it (None for full causal attention)."""
    window = getattr(model.config, "sliding_window", None)
    if not window or getattr(model.config, "use_sliding_window", True) is False:
        return [None] * model.n_layers
    types = getattr(model.config, "layer_types", None)
    if types is None:
        return [int(window)] * model.n_layers
    return [int(window) if kind == "sliding_attention" else None for kind in types]


def all_patterns(model: Model, prompt: str | torch.Tensor, run: Run | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids [pos] and every head's pattern [layer, head, query, key] (float32, CPU) on one prompt."""
    run = run if run is not None else model.run(prompt, cache=["blocks.*.attn.pattern"], logits=False)
    if run.tokens.shape[0] != 1:
        raise InputError("attention takes one prompt at a time")
    patterns = torch.stack([run.cache[f"blocks.{layer}.attn.pattern"][0] for layer in range(model.n_layers)])
    return run.tokens[0], patterns.float().cpu()


def summarise(patterns: torch.Tensor) -> dict[str, torch.Tensor]:
    """[layer, head] tensors of the ``HeadSummary`` statistics, over query positions 1..n-1."""
    n = patterns.shape[-1]
    rows = patterns[:, :, 1:, :]  # [layer, head, query 1..n-1, key]
    positions = torch.arange(n, dtype=patterns.dtype)
    distance = positions[1:, None] - positions[None, :]  # q - k, [query, key]
    return {
        "row_max": rows.amax(-1).mean(-1),
        "entropy": -torch.special.xlogy(rows, rows).sum(-1).mean(-1),
        "distance": (rows * distance.clamp(min=0)).sum(-1).mean(-1),
        "first_token": rows[..., 0].mean(-1),
    }


def _default_head(stats: dict[str, torch.Tensor]) -> tuple[int, int]:
    """The most focused head that is not mainly an attention sink (first-token weight < 0.5), if any."""
    focus = stats["row_max"].clone()
    if (stats["first_token"] < 0.5).any():
        focus[stats["first_token"] >= 0.5] = -1.0
    index = int(focus.flatten().argmax())
    return divmod(index, focus.shape[1])


def attention(
    model: Model,
    prompt: str,
    *,
    layer: int | None = None,
    head: int | None = None,
    query_position: int = -1,
    top_k: int = 5,
    run: Run | None = None,
) -> Attention:
    """Every head's attention pattern on ``prompt``, summaries per head, and the ``top_k`` keys each head
    reads at ``query_position`` (default: the last token).

    ``layer``/``head`` select the head whose full pattern the figure and JSON show; left out, the most
    focused head that is not mainly an attention sink is chosen (highest mean row max among heads whose
    mean first-token weight is below 0.5). Give both or only ``layer`` (then its most focused head).
    ``run``: a run of ``prompt`` that cached ``blocks.*.attn.pattern``, to reuse.
    """
    if not 1 <= top_k <= 100:
        raise InputError(f"top_k must be in 1..100, got {top_k}")
    if layer is not None and not 0 <= layer < model.n_layers:
        raise InputError(f"layer must be in 0..{model.n_layers - 1}, got {layer}")
    if head is not None and not 0 <= head < model.n_heads:
        raise InputError(f"head must be in 0..{model.n_heads - 1}, got {head}")
    if head is not None and layer is None:
        raise InputError("a head needs its layer; pass --layer too")
    ids, patterns = all_patterns(model, prompt, run)
    n = ids.shape[0]
    if n < 2:
        raise InputError("the prompt has one token; attention summaries need at least two, so add some text")
    if not -n <= query_position < n:
        raise InputError(f"query position {query_position} is out of range for {n} tokens (0..{n - 1} or -{n}..-1)")
    query = query_position % n
    stats = summarise(patterns)
    if layer is None:
        layer, head = _default_head(stats)
    elif head is None:
        layer_focus = stats["row_max"][layer].clone()
        if (stats["first_token"][layer] < 0.5).any():
            layer_focus[stats["first_token"][layer] >= 0.5] = -1.0
        head = int(layer_focus.argmax())
    tokens = [model.tokenizer.decode([int(t)]) for t in ids]
    weights, keys = patterns[:, :, query, : query + 1].topk(min(top_k, query + 1), dim=-1)
    reads = [
        [
            [
                KeyRead(int(k), tokens[int(k)], float(w))
                for w, k in zip(weights[lay, h], keys[lay, h], strict=True)
                if w > 0  # keys outside a sliding window get exactly 0: not read at all
            ]
            for h in range(model.n_heads)
        ]
        for lay in range(model.n_layers)
    ]
    summaries = [
        HeadSummary(lay, h, *(float(stats[name][lay, h]) for name in ("row_max", "entropy", "distance", "first_token")))
        for lay in range(model.n_layers)
        for h in range(model.n_heads)
    ]
    return Attention(
        model=model.name,
        prompt=prompt,
        tokens=tokens,
        layer=layer,
        head=head,
        query_position=query,
        summaries=summaries,
        reads=reads,
        sliding_windows=sliding_windows(model),
        patterns=patterns,
    )
