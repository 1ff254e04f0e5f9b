"""A registered attention implementation that exposes q, k, v, the pattern and z to hooks.

Hugging Face attention modules call ``ALL_ATTENTION_FUNCTIONS[config._attn_implementation]``. While a
run asks for attention internals, glasslab switches the model to the ``"glasslab"`` implementation
registered here. It calls the model's own attention function (the family's ``eager_attention_forward``
when the pattern is needed, so soft-capping and scaling stay the model's; otherwise the model's usual
fast implementation) and hands q/k/v before and z (and the pattern) after to the run's handler. Runs
that need none of this never switch, and so take Hugging Face's path unchanged.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Protocol

import torch
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface, eager_mask
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

IMPLEMENTATION = "glasslab"


class AttentionHandler(Protocol):
    """What a run attaches to one attention module."""

    needs_pattern: bool
    base_implementation: str

    def on_qkv(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, ...]: ...
    def on_pattern(self, pattern: torch.Tensor) -> torch.Tensor: ...
    def on_z(self, z: torch.Tensor) -> torch.Tensor: ...


# Attention module -> handler of the run in progress. Keyed by module identity, so two models (or a
# module with no handler) never see another run's hooks.
HANDLERS: dict[int, AttentionHandler] = {}


def family_eager_attention(module: torch.nn.Module) -> Callable:
    """The eager attention function defined in the module's own modeling file."""
    return sys.modules[type(module).__module__].eager_attention_forward


def _repeat_kv(states: torch.Tensor, n_rep: int) -> torch.Tensor:
    if n_rep == 1:
        return states
    batch, kv_heads, length, dim = states.shape
    return states[:, :, None].expand(batch, kv_heads, n_rep, length, dim).reshape(batch, kv_heads * n_rep, length, dim)


def glasslab_attention(module, query, key, value, attention_mask, **kwargs):
    """Attention with hook points; query/key/value are [batch, heads, pos, d_head] as HF passes them."""
    handler = HANDLERS.get(id(module))
    if handler is None:  # a module no run is looking into: the family's own eager attention is right for all
        return family_eager_attention(module)(module, query, key, value, attention_mask, **kwargs)
    query, key, value = handler.on_qkv(query, key, value)
    if handler.needs_pattern or handler.base_implementation == "eager":
        base = family_eager_attention(module)
    else:
        base = ALL_ATTENTION_FUNCTIONS[handler.base_implementation]
    z, weights = base(module, query, key, value, attention_mask, **kwargs)
    if handler.needs_pattern:
        new_weights = handler.on_pattern(weights)
        if new_weights is not weights:
            n_rep = query.shape[1] // value.shape[1]
            z = torch.matmul(new_weights.to(value.dtype), _repeat_kv(value, n_rep)).transpose(1, 2).contiguous()
            weights = new_weights
    return handler.on_z(z), weights


def register() -> None:
    """Make ``"glasslab"`` a valid attention implementation (idempotent)."""
    if IMPLEMENTATION not in ALL_ATTENTION_FUNCTIONS:
        AttentionInterface.register(IMPLEMENTATION, glasslab_attention)
    if IMPLEMENTATION not in ALL_MASK_ATTENTION_FUNCTIONS:
        # Eager masks are additive floats: right for the eager path and accepted by SDPA.
        AttentionMaskInterface.register(IMPLEMENTATION, eager_mask)
