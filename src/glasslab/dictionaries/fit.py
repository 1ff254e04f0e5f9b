"""Does an SAE fit a model? Its hook must exist there and carry activations of the SAE's width."""

from __future__ import annotations

from ..activations.rows import hook_width
from ..errors import GlasslabError, InputError
from ..model.model import Model
from .sae import SAE

__all__ = ["check_fits", "hook_width"]


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
