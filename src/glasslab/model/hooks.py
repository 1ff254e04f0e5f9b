"""Canonical hook names: one vocabulary for every family.

A hook name addresses one activation: ``embed``, ``blocks.{L}.{site}``, ``ln_final`` or ``logits``.
Names may contain shell-style wildcards (``blocks.*.resid_post``). This module only knows names and
shapes; ``session.py`` knows how to reach them inside a Hugging Face model.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import torch

from ..errors import HookNameError

Layout = Literal["resid", "neurons", "query_heads", "kv_heads", "pattern", "logits"]

# site -> (layout, shape description for docs and `glasslab hooks`)
BLOCK_SITES: dict[str, tuple[Layout, str]] = {
    "resid_pre": ("resid", "[batch, pos, d_model]  residual stream entering the block"),
    "resid_mid": ("resid", "[batch, pos, d_model]  residual stream after attention, before the MLP"),
    "resid_post": ("resid", "[batch, pos, d_model]  residual stream leaving the block"),
    "attn_out": ("resid", "[batch, pos, d_model]  what attention adds to the residual stream"),
    "mlp_out": ("resid", "[batch, pos, d_model]  what the MLP adds to the residual stream"),
    "attn.q": ("query_heads", "[batch, pos, head, d_head]  queries, after rotary embedding"),
    "attn.k": ("kv_heads", "[batch, key_pos, kv_head, d_head]  keys, after rotary embedding"),
    "attn.v": ("kv_heads", "[batch, key_pos, kv_head, d_head]  values"),
    "attn.pattern": ("pattern", "[batch, head, query_pos, key_pos]  attention weights (rows sum to 1)"),
    "attn.z": ("query_heads", "[batch, pos, head, d_head]  each head's weighted sum of values"),
    "attn.head_out": ("query_heads", "[batch, pos, head, d_model]  each head's write into the residual"),
    "mlp.in": ("resid", "[batch, pos, d_model]  the MLP's input, after its pre-norm (transcoders read it)"),
    "mlp.post": ("neurons", "[batch, pos, d_mlp]  neuron activations (input of the MLP output projection)"),
}
GLOBAL_SITES: dict[str, tuple[Layout, str]] = {
    "embed": ("resid", "[batch, pos, d_model]  token embeddings (output of the embedding module)"),
    "ln_final": ("resid", "[batch, pos, d_model]  final norm output, the unembedding's input"),
    "logits": ("logits", "[batch, pos, vocab]  the model's output logits (after any soft-capping)"),
}
ATTENTION_INTERNALS = ("attn.q", "attn.k", "attn.v", "attn.pattern", "attn.z", "attn.head_out")

_BLOCK_NAME = re.compile(r"^blocks\.(\d+)\.(.+)$")


@dataclass(frozen=True)
class HookName:
    """A parsed, validated hook name."""

    name: str
    site: str
    layer: int | None  # None for embed / ln_final / logits
    layout: Layout


def all_hook_names(n_layers: int, parallel_residual: bool) -> list[str]:
    """Every hook name a model with this shape has, in forward order."""
    names = ["embed"]
    for layer in range(n_layers):
        for site in BLOCK_SITES:
            if site == "resid_mid" and parallel_residual:
                continue
            names.append(f"blocks.{layer}.{site}")
    names += ["ln_final", "logits"]
    return names


def parse_hook_name(name: str, n_layers: int, parallel_residual: bool) -> HookName:
    """Validate one concrete name; the error lists close valid names."""
    if name in GLOBAL_SITES:
        return HookName(name, name, None, GLOBAL_SITES[name][0])
    match = _BLOCK_NAME.match(name)
    if match and match.group(2) in BLOCK_SITES:
        layer, site = int(match.group(1)), match.group(2)
        if layer >= n_layers:
            raise HookNameError(f"hook '{name}' names layer {layer}, but the model has layers 0..{n_layers - 1}")
        if site == "resid_mid" and parallel_residual:
            raise HookNameError(
                f"hook '{name}' does not exist: this model uses a parallel residual (attention and MLP both "
                "read resid_pre), so there is no resid_mid; use resid_pre, attn_out or mlp_out"
            )
        return HookName(name, site, layer, BLOCK_SITES[site][0])
    raise HookNameError(_unknown_message(name, all_hook_names(n_layers, parallel_residual)))


def expand_hook_names(patterns: list[str] | tuple[str, ...] | str, n_layers: int, parallel: bool) -> list[str]:
    """Expand wildcards (``*``, ``?``, ``[..]``) into concrete names, in forward order, without repeats."""
    if isinstance(patterns, str):
        patterns = [patterns]
    valid = all_hook_names(n_layers, parallel)
    chosen: set[str] = set()
    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            matches = fnmatch.filter(valid, pattern)
            if not matches:
                raise HookNameError(_unknown_message(pattern, valid, wildcard=True))
            chosen.update(matches)
        else:
            chosen.add(parse_hook_name(pattern, n_layers, parallel).name)
    return [name for name in valid if name in chosen]


def _unknown_message(name: str, valid: list[str], wildcard: bool = False) -> str:
    generic = [re.sub(r"^blocks\.\d+\.", "blocks.{L}.", v) for v in valid]
    generic_name = re.sub(r"^blocks\.(\d+|\*)\.", "blocks.{L}.", name)
    close = difflib.get_close_matches(generic_name, list(dict.fromkeys(generic)), n=3, cutoff=0.5)
    kind = "pattern" if wildcard else "hook name"
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"unknown {kind} '{name}'{hint} (model.hooks() lists every name)"


@dataclass(frozen=True)
class ApplyContext:
    """What an intervention needs to know about the forward pass it is acting in."""

    hook: str  # the concrete hook name (an intervention's own may be a wildcard)
    offset: int  # absolute position of the first query token in this forward pass
    key_offset: int  # absolute position of the first key (non-zero with a sliding-window cache)
    prompt_lengths: torch.Tensor  # [batch] real (unpadded) prompt lengths


@runtime_checkable
class InterventionLike(Protocol):
    """What the model layer asks of an intervention (glasslab.interventions provides them)."""

    hook: str

    def apply(self, act: torch.Tensor, layout: Layout, ctx: ApplyContext) -> torch.Tensor: ...

    def check_index(self, hook_name: str, layout: Layout, sizes: dict[str, int]) -> None: ...

    def check_positions(self, prompt_lengths: torch.Tensor, max_length: int) -> None: ...
