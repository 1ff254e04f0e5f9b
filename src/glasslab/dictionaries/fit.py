"""Does an SAE fit a model? Its hook must exist there and carry activations of the SAE's width."""

from __future__ import annotations

from ..errors import GlasslabError, InputError
from ..model.model import Model
from .sae import SAE


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


def check_fits(sae: SAE, model: Model) -> None:
    """One-line error if ``sae`` was made for another model or layer than ``model`` has."""
    origin = f" (trained on {sae.cfg.model_name})" if sae.cfg.model_name else ""
    try:
        width = hook_width(model, sae.hook, sae.cfg.hook_head_index)
    except GlasslabError as exc:
        raise InputError(f"this SAE reads '{sae.hook}'{origin}, which does not fit {model.name}: {exc}") from None
    if width != sae.d_in:
        raise InputError(
            f"this SAE reads {sae.d_in}-wide activations at '{sae.hook}'{origin}, but {model.name} has width "
            f"{width} there: it was made for another model"
        )
    if sae.cfg.hook_head_index is not None:
        heads = model.n_heads if model.hook_spec(sae.hook).layout == "query_heads" else model.n_kv_heads
        if not 0 <= sae.cfg.hook_head_index < heads:
            raise InputError(f"this SAE reads head {sae.cfg.hook_head_index} but {model.name} has heads 0..{heads - 1}")
