"""The result of one forward pass: tokens, logits and the activations that were asked for."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import torch

from ..errors import HookNameError


class ActivationCache(Mapping[str, torch.Tensor]):
    """Cached activations by hook name; a missing name says what was cached and how to ask for more."""

    def __init__(self, values: dict[str, torch.Tensor]) -> None:
        self._values = values

    def __getitem__(self, name: str) -> torch.Tensor:
        try:
            return self._values[name]
        except KeyError:
            cached = ", ".join(self._values) or "nothing"
            raise HookNameError(
                f"'{name}' was not cached (this run cached: {cached}); pass cache=['{name}'] to model.run"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {tuple(v.shape)}" for k, v in self._values.items())
        return f"ActivationCache({shapes})"


@dataclass(frozen=True)
class Run:
    """Tokens, attention mask, logits (None if the pass stopped early) and the requested activations.

    Prompts of different lengths are right-padded: ``attention_mask`` marks real tokens and
    ``prompt_lengths`` gives each prompt's length, so ``logits[i, prompt_lengths[i] - 1]`` is prompt
    ``i``'s next-token prediction.
    """

    tokens: torch.Tensor  # [batch, pos]
    attention_mask: torch.Tensor  # [batch, pos], 1 for real tokens
    logits: torch.Tensor | None  # [batch, pos, vocab]
    cache: ActivationCache = field(repr=False)
    # Logit rows decoded from ln_final by Model.logits_at, by (row, position): each is decoded once.
    decoded: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict, repr=False, compare=False)

    @property
    def prompt_lengths(self) -> torch.Tensor:
        return self.attention_mask.sum(dim=1)

    def last_logits(self) -> torch.Tensor:
        """[batch, vocab]: each prompt's logits at its last real token."""
        if self.logits is None:
            raise ValueError("this run stopped before the unembedding; run without stop_at_layer")
        rows = torch.arange(self.logits.shape[0], device=self.logits.device)
        return self.logits[rows, self.prompt_lengths.to(self.logits.device) - 1]
