"""Path patching: how much sender heads change a metric through chosen receivers only.

Wang et al. 2022 (IOI), Heimersheim & Nanda 2024. With ``direction="noising"`` (the IOI definition) the
*base* run is the clean prompt and the *source* run the corrupted one; ``"denoising"`` swaps them.

1. Run base and source once, caching every head's ``attn.z``.
2. Run the base prompt with the senders' ``attn.z`` taken from the source run and **every other head's
   ``attn.z`` frozen to its base value**, at every position. MLPs are recomputed (the IOI definition;
   ``freeze_mlps=True`` freezes them too, leaving only head-to-head and direct paths). Record the
   receivers' inputs: a receiver head's ``q``, ``k`` or ``v`` (as the model's attention sees them: after
   any q/k-norm and the rotary embedding), or the final residual stream for the ``logits`` receiver.
3. Run the base prompt once more, patching only the receivers' recorded inputs, and measure the metric.
   For the ``logits`` receiver (the last block's ``resid_post``, i.e. every path into the unembedding)
   step 3 equals step 2, so step 2's metric is the answer.

Freezing uses ``attn.z``, so in post-norm families (Gemma 2/3) a frozen layer's output is exactly its base
output, and at a sender's own layer the post-attention norm reacts to the sender's change. Grouped-query
models share keys and values across a group of query heads: a ``k``/``v`` receiver patches its kv head,
which every query head of the group reads.

Every sender set is one row of a batched forward pass (rows = sender sets x prompts), so sweeping all heads
costs two batched passes, not two per head.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import torch

from ...errors import InputError
from ...interventions import Patch, Replace
from ...model.model import Model
from ...model.run import Run
from ...views.explanations import explanation
from ...views.figures import Bars, Figure, Heatmap
from ...views.result import Record, Result
from ..metrics import Metric, make_metric

Direction = Literal["noising", "denoising"]
Head = tuple[int, int]
_RECEIVER = re.compile(r"^(\d+)\.(\d+)\.([qkv])$")
LOGITS = "logits"


@dataclass(frozen=True)
class Receiver:
    """A head's query/key/value input, or (``site == "logits"``) the final residual stream."""

    site: str  # "q" | "k" | "v" | "logits"
    layer: int | None = None
    head: int | None = None

    @property
    def label(self) -> str:
        return LOGITS if self.site == LOGITS else f"{self.layer}.{self.head}.{self.site}"


@dataclass(frozen=True)
class PathEffect(Record):
    json_keys = ("senders", "label", "value", "effect", "fraction")

    senders: tuple[Head, ...]
    value: float  # the metric after step 3, averaged over prompts
    effect: float  # value minus the base run's value
    fraction: float  # effect / (source value - base value): the share of the clean-corrupted difference

    @property
    def label(self) -> str:
        return "+".join(f"L{layer}.H{head}" for layer, head in self.senders)


@dataclass(frozen=True)
class PathPatching(Result):
    kind = "path_patching"
    json_keys = (
        "model",
        "clean",
        "corrupted",
        "metric",
        "metric_kind",
        "direction",
        "receivers",
        "freeze_mlps",
        "kv_group",
        "clean_value",
        "corrupted_value",
        "rows",
    )

    model: str
    clean: list[str]
    corrupted: list[str]
    metric: str
    metric_kind: str
    direction: Direction
    receivers: list[str]
    freeze_mlps: bool
    clean_value: float
    corrupted_value: float
    rows: list[PathEffect]
    kv_group: int = 1  # query heads per key/value head: above 1, a k/v receiver is shared by that many heads

    @property
    def base_value(self) -> float:
        return self.clean_value if self.direction == "noising" else self.corrupted_value

    def figure(self) -> Figure:
        into = ", ".join(self.receivers)
        ordered = sorted(self.rows, key=lambda r: -abs(r.effect))[:30]
        panels: list[Heatmap | Bars] = [
            Bars(
                f"change in {self.metric} through {into}",
                [r.label for r in ordered],
                [r.effect for r in ordered],
                "metric change",
                hover=[f"{r.label}: value {r.value:.4f}, change {r.effect:+.4f}, {r.fraction:+.1%}" for r in ordered],
            )
        ]
        singles = {r.senders[0]: r for r in self.rows if len(r.senders) == 1}
        if len(singles) == len(self.rows) and len(singles) > 1:
            layers = sorted({layer for layer, _ in singles})
            heads = sorted({head for _, head in singles})
            panels.insert(
                0,
                Heatmap(
                    f"change in {self.metric} through {into}, by sender head",
                    [[singles[(lay, h)].effect if (lay, h) in singles else 0.0 for h in heads] for lay in layers],
                    [f"L{lay}" for lay in layers],
                    [f"H{h}" for h in heads],
                    row_title="layer",
                    col_title="head",
                    value_label="metric change",
                    cell_text=[
                        [f"{singles[(lay, h)].effect:+.2f}" if (lay, h) in singles else "" for h in heads]
                        for lay in layers
                    ],
                    diverging=True,
                ),
            )
        base, source = ("clean", "corrupted") if self.direction == "noising" else ("corrupted", "clean")
        return Figure(
            f"{self.model}: path patching into {into}",
            panels,
            **explanation(
                "path_patching",
                metric=self.metric,
                source=source,
                into=into,
                base=base,
                clean=self.clean_value,
                corrupted=self.corrupted_value,
            ),
            extra={
                "direction": self.direction,
                "clean": f"{self.clean_value:.4f}",
                "corrupted": f"{self.corrupted_value:.4f}",
            },
        )


def parse_receivers(model: Model, receivers: Sequence[str | tuple[int, int, str]]) -> list[Receiver]:
    """Receivers from ``"logits"``, ``"L.H.q"``-style strings or ``(layer, head, "q")`` tuples."""
    parsed: list[Receiver] = []
    for item in receivers:
        if isinstance(item, str) and item.strip() == LOGITS:
            parsed.append(Receiver(LOGITS))
            continue
        if isinstance(item, str):
            match = _RECEIVER.match(item.strip())
            if not match:
                raise InputError(f"receiver '{item}' is not understood; write logits or LAYER.HEAD.q|k|v, e.g. 9.1.q")
            layer, head, site = int(match.group(1)), int(match.group(2)), match.group(3)
        else:
            layer, head, site = int(item[0]), int(item[1]), str(item[2])
            if site not in ("q", "k", "v"):
                raise InputError(f"receiver input '{site}' is unknown; use q, k or v")
        _check_head(model, layer, head, "receiver")
        parsed.append(Receiver(site, layer, head))
    if not parsed:
        raise InputError("give at least one receiver: logits, or head inputs like 9.1.q")
    if any(r.site == LOGITS for r in parsed) and len(parsed) > 1:
        raise InputError("the logits receiver already takes every path; list either logits or head inputs, not both")
    return list(dict.fromkeys(parsed))


def parse_senders(model: Model, senders: Sequence | None) -> list[tuple[Head, ...]]:
    """Sender sets: ``None`` (every head alone), ``(layer, head)`` pairs (each alone) or lists of pairs (together)."""
    if senders is None:
        return [((layer, head),) for layer in range(model.n_layers) for head in range(model.n_heads)]
    sets: list[tuple[Head, ...]] = []
    for item in senders:
        group = [item] if _is_head(item) else list(item)
        if not group or not all(_is_head(h) for h in group):
            raise InputError(f"sender {item!r} is not a (layer, head) pair or a list of them")
        heads = tuple(dict.fromkeys((int(a), int(b)) for a, b in group))
        for layer, head in heads:
            _check_head(model, layer, head, "sender")
        sets.append(heads)
    if not sets:
        raise InputError("give at least one sender head, e.g. (9, 1)")
    return sets


def path_patching(
    model: Model,
    clean: str | Sequence[str],
    corrupted: str | Sequence[str],
    *,
    senders: Sequence | None = None,
    receivers: Sequence[str | tuple[int, int, str]] = (LOGITS,),
    metric: str = "logit_diff",
    target: str | int | None = None,
    versus: str | int | None = None,
    position: int = -1,
    direction: Direction = "noising",
    freeze_mlps: bool = False,
    batch_size: int = 64,
) -> PathPatching:
    """The effect of each sender set on ``metric`` through ``receivers`` only (see the module docstring).

    ``senders``: ``None`` sweeps every head alone; ``[(9, 1), (10, 0)]`` each alone; ``[[(9, 1), (10, 0)]]``
    both together. ``receivers``: ``["logits"]`` or head inputs ``["9.1.q", (10, 0, "k")]``. Prompts pair up
    one to one and each pair must have the same number of tokens; values are averaged over pairs.
    ``batch_size`` bounds the rows (sender sets x prompts) of one forward pass.
    """
    if direction not in ("noising", "denoising"):
        raise InputError(f"direction must be 'noising' or 'denoising', not '{direction}'")
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    clean_texts = [clean] if isinstance(clean, str) else list(clean)
    corrupted_texts = [corrupted] if isinstance(corrupted, str) else list(corrupted)
    sets = parse_senders(model, senders)
    parsed = parse_receivers(model, receivers)
    clean_tokens, corrupted_tokens = _paired_tokens(model, clean_texts, corrupted_texts)
    measure = make_metric(model, metric, target=target, versus=versus, position=position)

    z_hooks = [f"blocks.{layer}.attn.z" for layer in range(model.n_layers)]
    extra = [f"blocks.{layer}.mlp_out" for layer in range(model.n_layers)] if freeze_mlps else []
    clean_run, corrupted_run = (
        model.run(t.input_ids, attention_mask=t.attention_mask, cache=[*z_hooks, *extra, "ln_final"], logits=False)
        for t in (clean_tokens, corrupted_tokens)
    )
    if measure.kind == "kl":
        measure = measure.with_reference(model, clean_run)
    clean_value = float(measure(model, clean_run).mean())
    corrupted_value = float(measure(model, corrupted_run).mean())
    base, source = (clean_run, corrupted_run) if direction == "noising" else (corrupted_run, clean_run)
    base_value, source_value = (
        (clean_value, corrupted_value) if direction == "noising" else (corrupted_value, clean_value)
    )
    gap = source_value - base_value
    if abs(gap) < 1e-6:
        raise InputError(
            "the clean and corrupted prompts give the same metric value, so there is no effect to trace; "
            "choose prompts (or a metric) that differ"
        )

    per_pass = max(1, batch_size // base.tokens.shape[0])  # sender sets per forward pass
    receiver_inputs = _receiver_inputs(model, parsed, base)
    values: list[float] = []
    for start in range(0, len(sets), per_pass):
        chunk = sets[start : start + per_pass]
        values.extend(
            _chunk_values(model, chunk, parsed, base, source, receiver_inputs, measure, freeze_mlps, base_value)
        )
    rows = [
        PathEffect(heads, value, value - base_value, (value - base_value) / gap)
        for heads, value in zip(sets, values, strict=True)
    ]
    return PathPatching(
        model.name,
        clean_texts,
        corrupted_texts,
        measure.describe(model),
        measure.kind,
        direction,
        [r.label for r in parsed],
        freeze_mlps,
        clean_value,
        corrupted_value,
        rows,
        model.n_heads // model.n_kv_heads,
    )


def _receiver_inputs(model: Model, parsed: list[Receiver], base: Run) -> Run | None:
    """The base run's head inputs at the receivers (up to the last receiver's layer), to patch them into;
    ``None`` where the receiver is the logits."""
    if parsed[0].site == LOGITS:
        return None
    hooks = sorted({f"blocks.{r.layer}.attn.{r.site}" for r in parsed})
    last = max(r.layer for r in parsed) + 1
    return model.run(base.tokens, attention_mask=base.attention_mask, cache=hooks, stop_at_layer=last)


def _chunk_values(
    model: Model,
    sets: list[tuple[Head, ...]],
    receivers: list[Receiver],
    base: Run,
    source: Run,
    receiver_inputs: Run | None,
    measure: Metric,
    freeze_mlps: bool,
    base_value: float,
) -> list[float]:
    """Steps 2 and 3 for a few sender sets at once: row ``s * n_prompts + p`` is set ``s`` on prompt ``p``."""
    n_sets, n_prompts = len(sets), base.tokens.shape[0]
    ids = base.tokens.repeat(n_sets, 1)
    mask = base.attention_mask.repeat(n_sets, 1)
    to_logits = receivers[0].site == LOGITS
    # A sender reaches a head's input only from an earlier layer; sets that reach no receiver change nothing.
    reach = torch.tensor(
        [[to_logits or any(layer < r.layer for layer, _ in heads) for r in receivers] for heads in sets]
    )
    active = reach.any(1)
    if not bool(active.any()):
        return [base_value] * n_sets
    last = model.n_layers if to_logits else max(r.layer for r in receivers) + 1
    if measure.reference is not None:  # kl: one clean distribution per row
        measure = replace(measure, reference=measure.reference.repeat(n_sets, 1))

    sends = torch.zeros(n_sets, model.n_layers, model.n_heads, dtype=torch.bool)
    for s, heads in enumerate(sets):
        for layer, head in heads:
            sends[s, layer, head] = True
    sends = sends.repeat_interleave(n_prompts, dim=0)  # [rows, layer, head]

    def freeze(layer: int) -> Replace:
        hook = f"blocks.{layer}.attn.z"
        mixed = torch.where(
            sends[:, layer].to(base.cache[hook].device)[:, None, :, None],
            source.cache[hook].repeat(n_sets, 1, 1, 1),
            base.cache[hook].repeat(n_sets, 1, 1, 1),
        )
        return Replace(hook, fn=lambda _act, mixed=mixed: mixed)

    interventions = [freeze(layer) for layer in range(last)]
    if freeze_mlps:
        interventions += [
            Patch(f"blocks.{layer}.mlp_out", source=base.cache[f"blocks.{layer}.mlp_out"].repeat(n_sets, 1, 1))
            for layer in range(last)
        ]
    if to_logits:
        recorded = model.run(ids, attention_mask=mask, cache=["ln_final"], logits=False, interventions=interventions)
        per_row = measure(model, recorded)
    else:
        hooks = sorted({f"blocks.{r.layer}.attn.{r.site}" for r in receivers})
        recorded = model.run(ids, attention_mask=mask, cache=hooks, stop_at_layer=last, interventions=interventions)
        patches = []
        group = model.n_heads // model.n_kv_heads
        for i, r in enumerate(receivers):
            hook = f"blocks.{r.layer}.attn.{r.site}"
            reached = reach[:, i].repeat_interleave(n_prompts)[:, None, None, None].to(recorded.cache[hook].device)
            # Rows whose senders cannot reach this receiver keep its base input.
            values = torch.where(reached, recorded.cache[hook], receiver_inputs.cache[hook].repeat(n_sets, 1, 1, 1))
            head = r.head if r.site == "q" else r.head // group
            patches.append(Patch(hook, source=values, head=head))
        final = model.run(ids, attention_mask=mask, cache=["ln_final"], logits=False, interventions=patches)
        per_row = measure(model, final)
    means = per_row.view(n_sets, n_prompts).mean(1)
    return [float(v) if bool(a) else base_value for v, a in zip(means, active, strict=True)]


def _paired_tokens(model: Model, clean: list[str], corrupted: list[str]):
    if len(clean) != len(corrupted):
        raise InputError(f"give as many corrupted prompts as clean ones ({len(clean)} vs {len(corrupted)})")
    clean_tokens, corrupted_tokens = model.tokenize(clean), model.tokenize(corrupted)
    clean_lengths = clean_tokens.attention_mask.sum(1)
    corrupted_lengths = corrupted_tokens.attention_mask.sum(1)
    for i, (a, b) in enumerate(zip(clean_lengths.tolist(), corrupted_lengths.tolist(), strict=True)):
        if a != b:
            raise InputError(
                f"clean prompt {i} has {a} tokens but its corrupted prompt has {b}; "
                "path patching needs pairs of equal token length"
            )
    return clean_tokens, corrupted_tokens


def _is_head(item: object) -> bool:
    return (
        isinstance(item, Sequence)
        and not isinstance(item, str)
        and len(item) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in item)
    )


def _check_head(model: Model, layer: int, head: int, what: str) -> None:
    if not (0 <= layer < model.n_layers and 0 <= head < model.n_heads):
        raise InputError(
            f"{what} head {layer}.{head} does not exist; layers are 0..{model.n_layers - 1}, "
            f"heads 0..{model.n_heads - 1}"
        )
