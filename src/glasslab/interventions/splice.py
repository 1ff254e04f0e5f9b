"""Splice a dictionary (an SAE) into its hook and edit features there: an intervention like ``gl.Clamp``.

Any object with ``hook``, ``d_in``, ``d_sae``, ``read``/``write`` (the hook's activation to and from the
rows it encodes) and ``encode``/``decode`` splices (``SplicedDictionary``): interventions sit below the
dictionaries layer, so they name no dictionary class.

At the SAE's hook the activation ``x`` is encoded to features ``f``; edits turn ``f`` into ``f'``; the
hook's new value is ``decode(f') + error`` where ``error = x - decode(f)`` is what the SAE misses.
That equals ``x + decode(f') - decode(f)``, which is how it is computed: with no feature changed the
difference is exactly zero, so the model's output is exactly (bitwise) the model's own, and an edit
changes the activation by exactly the decoder's response to it. ``keep_error=False`` instead replaces
the activation by the SAE's reconstruction ``decode(f')`` (what the SAE alone carries).

Positions are absolute token positions, as for every intervention (negative: from each prompt's end);
during generation with a key/value cache each forward pass sees only its new positions (``ctx.offset``
onwards), so a clamp at ``position=3`` acts once, in the prompt's pass, and one with no position acts
on every prompt and generated token.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch

from ..errors import InputError
from ..model.hooks import ApplyContext, Layout
from .selection import Index, as_list, position_mask

EditMode = Literal["value", "scale", "zero", "add"]
EDIT_MODES: tuple[str, ...] = ("value", "scale", "zero", "add")
_SPLICEABLE = ("resid", "neurons", "query_heads", "kv_heads")


class SplicedDictionary(Protocol):
    """What a splice needs of a dictionary (``glasslab.dictionaries.SAE`` has it all)."""

    d_in: int
    d_sae: int

    @property
    def hook(self) -> str: ...

    def read(self, act: torch.Tensor) -> torch.Tensor: ...

    def write(self, x: torch.Tensor, act: torch.Tensor) -> torch.Tensor: ...

    def encode(self, x: torch.Tensor) -> torch.Tensor: ...

    def decode(self, features: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor: ...


@dataclass(frozen=True)
class FeatureEdit:
    """Set features to ``amount`` (``value``), multiply them by it (``scale``), add it (``add``), or zero
    them, at ``position`` (absolute; None: every position)."""

    features: int | Sequence[int]
    mode: EditMode = "value"
    amount: float = 0.0
    position: Index = None

    def __post_init__(self) -> None:
        chosen = as_list(self.features)
        if not chosen:
            raise InputError("a feature edit needs at least one feature index")
        if self.mode not in EDIT_MODES:
            raise InputError(f"feature edit mode '{self.mode}' is unknown; use {', '.join(EDIT_MODES)}")
        if not math.isfinite(float(self.amount)):
            raise InputError("a feature edit's amount must be a finite number")
        object.__setattr__(self, "features", tuple(chosen))

    def describe(self) -> str:
        change = {
            "value": f"set to {self.amount:g}",
            "scale": f"scaled by {self.amount:g}",
            "add": f"{self.amount:+g}",
            "zero": "zeroed",
        }[self.mode]
        where = "" if self.position is None else f" at positions {as_list(self.position)}"
        return f"feature{'s' if len(self.features) > 1 else ''} {', '.join(map(str, self.features))} {change}{where}"

    def apply(self, features: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
        """``features`` [batch, pos, d_sae] edited where ``positions`` [batch, pos] (None: everywhere)."""
        index = torch.tensor(self.features, device=features.device)
        chosen = features[..., index]
        if self.mode == "value":
            new = torch.full_like(chosen, float(self.amount))
        elif self.mode == "scale":
            new = chosen * float(self.amount)
        elif self.mode == "add":
            new = chosen + float(self.amount)
        else:
            new = torch.zeros_like(chosen)
        if positions is not None:
            new = torch.where(positions.to(features.device)[..., None], new, chosen)
        out = features.clone()
        out[..., index] = new
        return out


@dataclass
class FeatureRecorder:
    """Keeps chosen features' values, before and after the edits, of prompt ``row`` in every forward pass
    (the prompt, then each generated token): ``values()`` gives [feature, position]."""

    features: list[int]
    row: int = 0
    before: list[torch.Tensor] = field(default_factory=list)
    after: list[torch.Tensor] = field(default_factory=list)

    def __call__(self, original: torch.Tensor, edited: torch.Tensor) -> None:
        self.before.append(original[self.row, :, self.features].float().cpu())
        self.after.append(edited[self.row, :, self.features].float().cpu())

    def values(self, edited: bool = True) -> torch.Tensor:
        pieces = self.after if edited else self.before
        if not pieces:
            return torch.zeros(len(self.features), 0)
        return torch.cat(pieces).T


@dataclass(frozen=True, eq=False)
class SAESplice:
    """The SAE spliced into its hook with ``edits`` applied to its features (see the module docstring).

    Use it like any intervention: ``model.run(prompt, interventions=[SAESplice(sae, [edit])])``,
    ``model.generate(...)`` or ``with model.intervene(...)``.
    """

    sae: SplicedDictionary
    edits: Sequence[FeatureEdit] = ()
    keep_error: bool = True
    recorder: FeatureRecorder | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "edits", tuple(self.edits))
        for edit in self.edits:
            if not isinstance(edit, FeatureEdit):
                raise InputError(f"SAESplice edits must be FeatureEdit values, not {type(edit).__name__}")

    @property
    def hook(self) -> str:
        return self.sae.hook

    def apply(self, act: torch.Tensor, layout: Layout, ctx: ApplyContext) -> torch.Tensor:
        x = self.sae.read(act)
        if x.shape[-1] != self.sae.d_in:
            raise InputError(
                f"the SAE reads {self.sae.d_in}-wide activations but '{ctx.hook}' has {x.shape[-1]}: it was made "
                "for another model (load it with load_sae(..., model) to check)"
            )
        features = self.sae.encode(x)
        edited = features
        offset = ctx.key_offset if layout == "kv_heads" else ctx.offset
        for edit in self.edits:
            mask = position_mask(edit.position, x.shape[1], offset, ctx.prompt_lengths)
            edited = edit.apply(edited, mask)
        if self.recorder is not None:
            self.recorder(features, edited)
        if not self.keep_error:
            return self.sae.write(self.sae.decode(edited, like=x), act)
        if edited is features:
            return act
        change = self.sae.decode(edited, like=x) - self.sae.decode(features, like=x)
        return self.sae.write(x + change, act)

    def check_index(self, hook_name: str, layout: Layout, sizes: dict[str, int]) -> None:
        if layout not in _SPLICEABLE:
            raise InputError(f"an SAE cannot be spliced into '{hook_name}' (layout {layout})")
        for edit in self.edits:
            bad = [f for f in edit.features if not 0 <= f < self.sae.d_sae]
            if bad:
                raise InputError(f"feature {bad[0]} is out of range for this SAE (valid: 0..{self.sae.d_sae - 1})")

    def check_positions(self, prompt_lengths: torch.Tensor, max_length: int) -> None:
        shortest = int(prompt_lengths.min())
        for edit in self.edits:
            for p in as_list(edit.position) or ():
                if (p < 0 and shortest + p < 0) or p >= max_length:
                    raise InputError(
                        f"position {p} is out of range for a prompt of {shortest} tokens "
                        f"(valid: 0..{max_length - 1}, or -{shortest}..-1 counted from each prompt's end)"
                    )
