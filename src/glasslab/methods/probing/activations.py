"""Activations at each example's chosen token, for many hooks at once, in batched forward passes.

Examples are tokenized exactly as ``Model.tokenize`` does (BOS first), the position of each is resolved
to an absolute token index, and the batches run through ``model.run`` with only the requested hooks
cached and the pass stopped after the last layer they need. Hooks with heads (``attn.z``, ``attn.q``...)
give one flat vector per example (heads x d_head); attention patterns and logits are not probe inputs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ...errors import InputError
from ...model.hooks import BLOCK_SITES, InterventionLike
from ...model.model import Model
from ...progress import progress
from .datasets import ProbeDataset, ProbeExample

_UNPROBEABLE = ("pattern", "logits")


@dataclass(frozen=True)
class TokenizedExamples:
    """Each example's token ids (BOS first), the absolute position read, and its word type."""

    ids: list[list[int]]
    positions: list[int]
    groups: list[str]
    tokens: list[str]  # the token text at each position


@dataclass(frozen=True)
class Activations:
    """``values[hook]`` is float32 ``[examples, features]`` read at each example's position."""

    hooks: list[str]
    values: dict[str, np.ndarray]
    examples: TokenizedExamples


def probe_hooks(
    model: Model, hook: str | Sequence[str] = "resid_post", layers: Sequence[int] | None = None
) -> list[str]:
    """Concrete hook names: a block site (``resid_post``, ``mlp.post``...) at ``layers`` (default: all), or
    hook names and wildcards as ``model.expand_hooks`` takes them."""
    names = [hook] if isinstance(hook, str) else list(hook)
    if not names:
        raise InputError("give a hook to probe, e.g. resid_post or blocks.*.mlp.post")
    if layers is not None:
        bad = [layer for layer in layers if not 0 <= int(layer) < model.n_layers]
        if bad:
            raise InputError(f"layer {bad[0]} is out of range; {model.name} has layers 0..{model.n_layers - 1}")
    expanded: list[str] = []
    for name in names:
        if name in BLOCK_SITES:
            chosen = range(model.n_layers) if layers is None else sorted({int(x) for x in layers})
            expanded += model.expand_hooks([f"blocks.{layer}.{name}" for layer in chosen])
        else:
            found = model.expand_hooks(name)
            if layers is not None:
                found = [h for h in found if model.hook_spec(h).layer is None or model.hook_spec(h).layer in layers]
            expanded += found
    ordered = [h for h in model.hooks() if h in set(expanded)]
    if not ordered:
        raise InputError(f"no hook of '{', '.join(names)}' lies in the chosen layers")
    for name in ordered:
        if model.hook_spec(name).layout in _UNPROBEABLE:
            raise InputError(
                f"'{name}' cannot be probed (its size depends on the prompt or the vocabulary); "
                "probe resid_*, attn_out, mlp_out, mlp.post or attn.q/k/v/z/head_out"
            )
    return ordered


def _word_position(text: str, word: str, offsets: list[tuple[int, int]], where: str) -> int:
    """Index (without BOS) of the last token overlapping the first occurrence of ``word`` in ``text``."""
    match = re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text) or re.search(re.escape(word), text)
    if match is None:
        raise InputError(f"{where}: the word '{word}' does not occur in the text '{text[:60]}'")
    start, end = match.span()
    overlapping = [i for i, (a, b) in enumerate(offsets) if a < end and b > start]
    if not overlapping:
        raise InputError(f"{where}: no token covers the word '{word}'")
    return overlapping[-1]


def tokenize_examples(model: Model, examples: Sequence[ProbeExample]) -> TokenizedExamples:
    """Token ids as ``model.tokenize`` makes them, and each example's absolute position (BOS = 0)."""
    tokenizer = model.tokenizer
    bos = tokenizer.bos_token_id
    shift = 1 if bos is not None else 0
    ids, positions, groups, tokens = [], [], [], []
    for number, example in enumerate(examples):
        where = example.source or f"example {number}"
        by_word = isinstance(example.position, str) and example.position != "last"
        encoded = tokenizer(example.text, add_special_tokens=False, return_offsets_mapping=by_word)
        row = ([bos] if bos is not None else []) + list(encoded["input_ids"])
        if len(row) <= shift:
            raise InputError(f"{where}: the text has no tokens")
        if model.context_length and len(row) > model.context_length:
            raise InputError(
                f"{where}: the text is {len(row)} tokens but {model.name} reads at most "
                f"{model.context_length}; shorten it"
            )
        if example.position == "last":
            position = len(row) - 1
        elif isinstance(example.position, int):
            position = example.position + len(row) if example.position < 0 else example.position
            if not 0 <= position < len(row):
                raise InputError(
                    f"{where}: position {example.position} is beyond the text's {len(row)} tokens "
                    f"(valid: 0..{len(row) - 1} with BOS at 0, or -{len(row)}..-1)"
                )
        else:
            position = shift + _word_position(example.text, example.position, encoded["offset_mapping"], where)
        token = tokenizer.decode([row[position]])
        ids.append(row)
        positions.append(position)
        tokens.append(token)
        groups.append(example.group if example.group is not None else token.strip() or token)
    return TokenizedExamples(ids, positions, groups, tokens)


def _stop_at(model: Model, hooks: Sequence[str]) -> int | None:
    """The smallest stop_at_layer that still computes every hook (None: ln_final needs the full pass)."""
    layers = [model.hook_spec(h).layer for h in hooks]
    if any(layer is None and h != "embed" for h, layer in zip(hooks, layers, strict=True)):
        return None
    return max((layer + 1 for layer in layers if layer is not None), default=0)


def harvest(
    model: Model,
    dataset: ProbeDataset,
    hooks: Sequence[str],
    *,
    batch_size: int = 32,
    interventions: Sequence[InterventionLike] = (),
    tokenized: TokenizedExamples | None = None,
) -> Activations:
    """Activations of every hook at each example's position, in batches of similar length."""
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    tokenized = tokenized or tokenize_examples(model, dataset.examples)
    hooks = list(hooks)
    stop = _stop_at(model, hooks)
    order = sorted(range(len(tokenized.ids)), key=lambda i: len(tokenized.ids[i]))
    pieces: dict[str, list[np.ndarray]] = {h: [] for h in hooks}
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for batch in progress(batches, description="activations", unit="batch"):
        width = max(len(tokenized.ids[i]) for i in batch)
        ids = torch.full((len(batch), width), model.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            ids[row, : len(tokenized.ids[i])] = torch.tensor(tokenized.ids[i])
            mask[row, : len(tokenized.ids[i])] = 1
        run = model.run(
            ids, attention_mask=mask, cache=hooks, stop_at_layer=stop, logits=False, interventions=interventions
        )
        rows = torch.arange(len(batch))
        where = torch.tensor([tokenized.positions[i] for i in batch])
        for hook in hooks:
            picked = run.cache[hook][rows, where.to(run.cache[hook].device)]
            pieces[hook].append(picked.reshape(len(batch), -1).float().cpu().numpy())
    inverse = np.argsort(np.array(order))
    values = {hook: np.concatenate(pieces[hook])[inverse] for hook in hooks}
    for hook in hooks:
        if not np.isfinite(values[hook]).all():
            raise InputError(f"the activations at '{hook}' contain NaN or infinity; load the model in float32")
    return Activations(hooks, values, tokenized)
