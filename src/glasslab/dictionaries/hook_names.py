"""Translate between SAELens/TransformerLens hook names and glasslab's canonical ones.

Published SAEs record the hook they were trained on in TransformerLens's vocabulary
(``blocks.8.hook_resid_pre``); glasslab names the same activation ``blocks.8.resid_pre``. SAEs that
glasslab trains are saved with the TransformerLens name too, so SAELens can load them unchanged.
"""

from __future__ import annotations

import re

from ..errors import InputError

_BLOCK_TO_TL = {
    "resid_pre": "hook_resid_pre",
    "resid_mid": "hook_resid_mid",
    "resid_post": "hook_resid_post",
    "attn_out": "hook_attn_out",
    "mlp_out": "hook_mlp_out",
    "attn.q": "attn.hook_q",
    "attn.k": "attn.hook_k",
    "attn.v": "attn.hook_v",
    "attn.z": "attn.hook_z",
    "attn.pattern": "attn.hook_pattern",
    "mlp.post": "mlp.hook_post",
    # Nearest, not equal: TransformerLens's hook_normalized is before the norm's weight and bias, mlp.in after
    # them. Published transcoders reading it get the norm folded in (transcoder_layouts); glasslab's own files
    # keep their canonical hook in metadata (glasslab_hook) and are read back as saved.
    "mlp.in": "ln2.hook_normalized",
}
_GLOBAL_TO_TL = {"embed": "hook_embed", "ln_final": "ln_final.hook_normalized"}
# TransformerLens's input of the second norm is the residual stream after attention.
_TL_ALIASES = {"hook_mlp_in": "resid_mid"}
_TL_TO_BLOCK = {tl: site for site, tl in _BLOCK_TO_TL.items()} | _TL_ALIASES
_TL_TO_GLOBAL = {tl: name for name, tl in _GLOBAL_TO_TL.items()}
_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")


def to_transformer_lens(hook: str) -> str:
    """``blocks.6.resid_post`` -> ``blocks.6.hook_resid_post``."""
    if hook in _GLOBAL_TO_TL:
        return _GLOBAL_TO_TL[hook]
    match = _BLOCK.match(hook)
    if match and match.group(2) in _BLOCK_TO_TL:
        return f"blocks.{match.group(1)}.{_BLOCK_TO_TL[match.group(2)]}"
    raise InputError(f"hook '{hook}' has no TransformerLens name; SAEs can be trained on residual, MLP or head hooks")


def from_transformer_lens(hook: str) -> str:
    """``blocks.6.hook_resid_post`` -> ``blocks.6.resid_post``; canonical names pass through unchanged."""
    if hook in _TL_TO_GLOBAL:
        return _TL_TO_GLOBAL[hook]
    match = _BLOCK.match(hook)
    if match:
        site = match.group(2)
        if site in _TL_TO_BLOCK:
            return f"blocks.{match.group(1)}.{_TL_TO_BLOCK[site]}"
        if site in _BLOCK_TO_TL:
            return hook
    if hook in _GLOBAL_TO_TL:
        return hook
    raise InputError(
        f"the SAE's hook '{hook}' is not one glasslab can splice into (expected e.g. blocks.8.hook_resid_pre)"
    )
