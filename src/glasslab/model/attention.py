"""A registered attention implementation that exposes q, k, v, the pattern and z to hooks.

Hugging Face attention modules call ``ALL_ATTENTION_FUNCTIONS[config._attn_implementation]``. While a
run asks for attention internals, glasslab switches the model to the ``"glasslab"`` implementation
registered here. It calls the model's own attention function (the family's ``eager_attention_forward``
when the pattern is needed, so soft-capping and scaling stay the model's; otherwise the model's usual
fast implementation) and hands q/k/v before and z (and the pattern) after to the run's handler. Runs
that need none of this never switch, and so take Hugging Face's path unchanged.

The switch is model-wide state, shared by every thread using the model, so it is counted: the first call
that needs it switches, the last one out switches back. Handlers belong to one call (a context variable,
so one thread or async task): a forward pass of another call that meets the switched model finds no
handler of its own and takes the model's original implementation, as it would have unswitched.
"""

from __future__ import annotations

import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from types import MappingProxyType
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


# Attention module id -> handler, of the call running in this context only: another thread's forward pass
# through the same module never sees them. Keyed by module identity, so two models never mix either.
HANDLERS: ContextVar[Mapping[int, AttentionHandler]] = ContextVar("glasslab_handlers", default=MappingProxyType({}))


@dataclass
class _Switch:
    original: str  # the model's own implementation, restored when the last call leaves
    calls: int = 0


_LOCK = threading.Lock()
_SWITCHED: weakref.WeakKeyDictionary[torch.nn.Module, _Switch] = weakref.WeakKeyDictionary()
# Attention module -> its model's original implementation; kept after switching back, so a pass that read
# "glasslab" from the config just before the switch back still finds its way.
_ORIGINAL: weakref.WeakKeyDictionary[torch.nn.Module, str] = weakref.WeakKeyDictionary()


def switch_on(hf: torch.nn.Module, attention_modules: Iterable[torch.nn.Module]) -> str:
    """Count one more call needing the ``"glasslab"`` implementation (switching the model on the first);
    the model's original implementation. Pair with ``switch_off``."""
    with _LOCK:
        switch = _SWITCHED.get(hf)
        if switch is None:
            register()
            switch = _Switch(hf.config._attn_implementation)
            for module in attention_modules:
                _ORIGINAL[module] = switch.original
            hf.set_attn_implementation(IMPLEMENTATION)
            _SWITCHED[hf] = switch
        switch.calls += 1
        return switch.original


def switch_off(hf: torch.nn.Module) -> None:
    """One call fewer needs the switch; the last one restores the model's own implementation."""
    with _LOCK:
        switch = _SWITCHED[hf]
        switch.calls -= 1
        if switch.calls == 0:
            del _SWITCHED[hf]
            hf.set_attn_implementation(switch.original)


def is_switched(hf: torch.nn.Module) -> bool:
    """Whether some call in progress (in any thread) holds the model on glasslab's attention."""
    with _LOCK:
        return hf in _SWITCHED


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
    handler = HANDLERS.get().get(id(module))
    if handler is None:  # another call switched the model: this pass takes the model's own attention
        base = _implementation(module, _ORIGINAL.get(module, "eager"))
        return base(module, query, key, value, attention_mask, **kwargs)
    query, key, value = handler.on_qkv(query, key, value)
    base = _implementation(module, "eager" if handler.needs_pattern else handler.base_implementation)
    z, weights = base(module, query, key, value, attention_mask, **kwargs)
    if handler.needs_pattern:
        new_weights = handler.on_pattern(weights)
        if new_weights is not weights:
            n_rep = query.shape[1] // value.shape[1]
            z = torch.matmul(new_weights.to(value.dtype), _repeat_kv(value, n_rep)).transpose(1, 2).contiguous()
            weights = new_weights
    return handler.on_z(z), weights


def _implementation(module: torch.nn.Module, name: str) -> Callable:
    """The family's eager attention, or else SDPA: it takes every mask the model may have built for the
    pass (an SDPA mask, none at all, or the eager additive one made while switched)."""
    return family_eager_attention(module) if name == "eager" else ALL_ATTENTION_FUNCTIONS["sdpa"]


def register() -> None:
    """Make ``"glasslab"`` a valid attention implementation (idempotent)."""
    if IMPLEMENTATION not in ALL_ATTENTION_FUNCTIONS:
        AttentionInterface.register(IMPLEMENTATION, glasslab_attention)
    if IMPLEMENTATION not in ALL_MASK_ATTENTION_FUNCTIONS:
        # Eager masks are additive floats: right for the eager path and accepted by SDPA.
        AttentionMaskInterface.register(IMPLEMENTATION, eager_mask)
