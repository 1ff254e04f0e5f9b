"""Interventions: small values that say what to change, where.

Each is bound to one hook name (wildcards allowed) and optionally to heads, positions, neurons or key
positions. They do nothing by themselves: pass them to ``model.run``/``model.generate`` or open
``with model.intervene(...)``. The hook's new value is ``where(selected, replacement, original)``,
computed out of place, so the model's own tensors are never written to.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import Any, Literal

import torch

from ..errors import InputError
from ..model.hooks import ApplyContext, Layout
from .selection import Index, aligned_source, as_list, element_mask

# Which index keywords make sense for which activation layout.
_ALLOWED_INDEX = {
    "resid": {"position"},
    "neurons": {"position", "neuron"},
    "query_heads": {"position", "head"},
    "kv_heads": {"position", "head"},
    "pattern": {"position", "head", "key_position"},
}


@dataclass(frozen=True, eq=False)
class Intervention:
    """Base: a hook name plus an optional index; subclasses say what the selected elements become."""

    hook: str
    _: KW_ONLY
    head: Index = None
    position: Index = None
    neuron: Index = None
    key_position: Index = None

    def replacement(
        self, act: torch.Tensor, layout: Layout, ctx: ApplyContext, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """The values the selected elements take (broadcastable to ``act``)."""
        raise NotImplementedError

    def apply(self, act: torch.Tensor, layout: Layout, ctx: ApplyContext) -> torch.Tensor:
        mask = element_mask(
            layout,
            act.shape,
            ctx,
            position=self.position,
            head=self.head,
            neuron=self.neuron,
            key_position=self.key_position,
        )
        if mask is not None:
            mask = mask.to(act.device)
        new = self.replacement(act, layout, ctx, mask)
        if not isinstance(new, torch.Tensor):
            new = torch.as_tensor(new)
        new = new.to(device=act.device, dtype=act.dtype)
        if mask is None:
            return new.expand(act.shape) if new.shape != act.shape else new
        return torch.where(mask, new, act)

    def check_index(self, hook_name: str, layout: Layout, sizes: dict[str, int]) -> None:
        """Raise a one-line InputError if an index keyword does not fit this hook or is out of range."""
        if layout == "logits":
            raise InputError(f"'{hook_name}' can be cached but not intervened on; intervene on ln_final instead")
        allowed = _ALLOWED_INDEX[layout]
        for keyword in ("head", "neuron", "key_position", "position"):
            values = as_list(getattr(self, keyword))
            if values is None:
                continue
            if keyword not in allowed:
                raise InputError(
                    f"{type(self).__name__} on '{hook_name}' cannot take {keyword}=...; "
                    f"that hook accepts {', '.join(sorted(allowed))}"
                )
            limit = sizes.get(keyword)
            if limit is None:
                continue
            bad = [v for v in values if not (0 <= v < limit)]
            if bad:
                raise InputError(f"{keyword} {bad[0]} is out of range for '{hook_name}' (valid: 0..{limit - 1})")

    def check_positions(self, prompt_lengths: torch.Tensor, max_length: int) -> None:
        """Raise if a position cannot exist in any prompt of this call (negatives count from each end)."""
        shortest = int(prompt_lengths.min())
        for keyword in ("position", "key_position"):
            for p in as_list(getattr(self, keyword)) or ():
                if (p < 0 and shortest + p < 0) or p >= max_length:
                    raise InputError(
                        f"{keyword} {p} is out of range for a prompt of {shortest} tokens "
                        f"(valid: 0..{max_length - 1}, or -{shortest}..-1 counted from each prompt's end)"
                    )


@dataclass(frozen=True, eq=False)
class Ablate(Intervention):
    """Knock out the selected activations.

    ``how="zero"`` sets them to 0; ``"mean"`` to their mean over a reference (a Run that cached this
    hook, or a tensor with the hook's layout) across prompts and real positions; ``"resample"`` to the
    activations of a randomly chosen reference prompt at the same positions (seeded).
    """

    how: Literal["zero", "mean", "resample"] = "zero"
    reference: Any = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.how not in ("zero", "mean", "resample"):
            raise InputError(f"Ablate how='{self.how}' is unknown; use 'zero', 'mean' or 'resample'")
        if self.how != "zero" and self.reference is None:
            raise InputError(f"Ablate how='{self.how}' needs reference=<a Run that cached '{self.hook}'>")

    def replacement(self, act, layout, ctx, mask):
        if self.how == "zero":
            return torch.zeros((), dtype=act.dtype)
        values, padding = reference_activation(self.reference, ctx.hook)
        if self.how == "mean":
            if layout == "pattern":
                raise InputError("mean ablation of an attention pattern is not defined; use zero or Patch")
            return masked_mean(values, padding).to(act.device)
        generator = torch.Generator().manual_seed(self.seed)
        rows = torch.randint(values.shape[0], (act.shape[0],), generator=generator)
        return aligned_source(values[rows], act, layout, ctx, mask, f"resample reference for '{ctx.hook}'")


@dataclass(frozen=True, eq=False)
class Patch(Intervention):
    """Replace the selected activations with another run's at the same positions.

    ``source`` is a Run that cached this hook (or a tensor with the hook's layout); a source of one
    prompt applies to every prompt in the batch.
    """

    source: Any = None

    def __post_init__(self) -> None:
        if self.source is None:
            raise InputError(f"Patch needs source=<a Run that cached '{self.hook}'>")

    def replacement(self, act, layout, ctx, mask):
        values, _ = reference_activation(self.source, ctx.hook)
        return aligned_source(values, act, layout, ctx, mask, f"patch source for '{ctx.hook}'")


@dataclass(frozen=True, eq=False)
class Add(Intervention):
    """Add ``scale * vector`` to the selected activations (steering vectors, ActAdd).

    ``vector`` has the hook's last dimension (d_model for the residual stream), or its last two for
    per-head hooks.
    """

    vector: torch.Tensor = None  # type: ignore[assignment]
    scale: float = 1.0

    def __post_init__(self) -> None:
        vector = torch.as_tensor(self.vector)
        if not torch.isfinite(vector).all() or not math.isfinite(self.scale):
            raise InputError("Add got a vector or scale containing NaN or infinity")
        object.__setattr__(self, "vector", vector)

    def replacement(self, act, layout, ctx, mask):
        if self.vector.shape != act.shape[-self.vector.dim() :]:
            raise InputError(
                f"Add vector has shape {tuple(self.vector.shape)} but '{self.hook}' ends in {tuple(act.shape[2:])}"
            )
        return act + self.scale * self.vector.to(device=act.device, dtype=act.dtype)


@dataclass(frozen=True, eq=False)
class Clamp(Intervention):
    """Set the selected activations to a fixed value (a number, or a tensor broadcastable to them)."""

    value: Any = 0.0

    def __post_init__(self) -> None:
        if not torch.isfinite(torch.as_tensor(self.value, dtype=torch.float64)).all():
            raise InputError("Clamp value contains NaN or infinity")

    def replacement(self, act, layout, ctx, mask):
        return torch.as_tensor(self.value, dtype=act.dtype, device=act.device)


@dataclass(frozen=True, eq=False)
class Replace(Intervention):
    """Replace the selected activations with ``fn(activation)``; ``fn`` gets and returns the whole tensor."""

    fn: Callable[[torch.Tensor], torch.Tensor] = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise InputError("Replace needs fn=<a function from the activation tensor to a new tensor>")

    def replacement(self, act, layout, ctx, mask):
        new = self.fn(act)
        if not isinstance(new, torch.Tensor) or new.shape != act.shape:
            raise InputError(f"Replace fn must return a tensor of shape {tuple(act.shape)} for '{self.hook}'")
        return new


def reference_activation(reference: Any, hook: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(activations, attention mask or None) from a Run that cached ``hook``, or from a plain tensor."""
    if isinstance(reference, torch.Tensor):
        return reference, None
    cache = getattr(reference, "cache", None)
    if cache is None:
        raise InputError(f"reference for '{hook}' must be a Run or a tensor, not {type(reference).__name__}")
    if hook not in cache:
        raise InputError(f"the reference run did not cache '{hook}'; run it with cache=['{hook}']")
    return cache[hook], reference.attention_mask


def masked_mean(values: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over prompts and real (unpadded) positions, keeping the feature dimensions."""
    if attention_mask is None:
        return values.float().mean(dim=(0, 1)).to(values.dtype)
    weights = attention_mask.to(values.device, torch.float32)
    weights = weights.view(*weights.shape, *([1] * (values.dim() - 2)))
    return ((values.float() * weights).sum(dim=(0, 1)) / weights.sum()).to(values.dtype)
