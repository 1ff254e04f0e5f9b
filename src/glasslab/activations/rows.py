"""Which rows a hook gives and how wide they are: shared by the harvest, the live activation stream and the
dictionaries that read them (BOS is never a row; per-head hooks are read with their heads flattened)."""

from __future__ import annotations

import torch

from ..errors import InputError
from ..model.model import Model


def stop_layer(model: Model, hook: str) -> int | None:
    """The ``stop_at_layer`` that still computes ``hook``: one past its block (0 for embed, None for ln_final)."""
    spec = model.hook_spec(hook)
    if spec.site == "embed":
        return 0
    return None if spec.layer is None else spec.layer + 1


def hook_rows(model: Model, hook: str, run_cache: torch.Tensor, head_index: int | None) -> torch.Tensor:
    """[batch, pos, d_in]: a cached hook value as the SAE reads it (per-head hooks flattened or one head)."""
    if run_cache.dim() == 4:  # [batch, pos, head, d_head]
        return run_cache[:, :, head_index] if head_index is not None else run_cache.flatten(-2)
    return run_cache


def skips_bos(model: Model) -> bool:
    """Packed sequences start with BOS when the tokenizer has one; that position is never used."""
    return model.tokenizer.bos_token_id is not None


def rows_per_sequence(model: Model, seq_len: int) -> int:
    """Activation rows one packed sequence of ``seq_len`` tokens gives (BOS, if any, gives none)."""
    return seq_len - (1 if skips_bos(model) else 0)


def hook_width(model: Model, hook: str, head_index: int | None = None) -> int:
    """The width of one token's activation at ``hook`` as an SAE sees it (heads flattened)."""
    spec = model.hook_spec(hook)
    if spec.layout == "resid":
        return model.d_model
    if spec.layout == "neurons":
        return model.d_mlp
    if spec.layout in ("query_heads", "kv_heads"):
        heads = model.n_heads if spec.layout == "query_heads" else model.n_kv_heads
        if spec.site == "attn.head_out":
            raise InputError(f"'{hook}' holds one residual-width vector per head; train the SAE on attn_out instead")
        return model.d_head if head_index is not None else heads * model.d_head
    raise InputError(f"an SAE cannot read '{hook}' (attention patterns and logits are not activations to encode)")
