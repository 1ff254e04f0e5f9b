"""Text generation through Hugging Face ``generate``, with glasslab's hooks in place.

Interventions apply to the prompt's forward pass and to every generated token's. Hugging Face keeps
a key/value cache, so each new token's pass sees only that token: positions are absolute (an
intervention at ``position=3`` acts once, in the prompt pass; one with no position acts on every
prompt and generated token; ``position=-1`` is the prompt's last token).

Sampling draws from torch's process-wide random generator, so sampled generations take turns (one lock
for all of them): a seeded one is then repeatable even while other threads sample. Greedy ones run freely.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..errors import InputError
from ..views.html import html_table
from ..views.result import Result
from .hooks import InterventionLike
from .session import HookSession

if TYPE_CHECKING:
    from .model import Model

_SAMPLING = threading.Lock()


@dataclass(frozen=True)
class Generation(Result):
    """A prompt and its continuation."""

    kind = "generation"

    model: str
    prompt: str
    completion: str
    prompt_tokens: int
    new_tokens: list[str]
    new_token_ids: list[int]
    temperature: float
    seed: int | None
    interventions: int

    def _repr_html_(self) -> str:
        """A table: a continuation is text, not a figure."""
        return html_table(
            ["prompt", "completion"],
            [[self.prompt, self.completion]],
            caption=f"{self.model}: {len(self.new_tokens)} new tokens",
        )


def generate(
    model: Model,
    prompt: str,
    *,
    max_new_tokens: int = 30,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
    interventions: Sequence[InterventionLike] = (),
    prepend_bos: bool = True,
) -> Generation:
    """Greedy (``temperature=0``) or sampled continuation; ``seed`` makes sampling repeatable."""
    if not 1 <= max_new_tokens <= 4096:
        raise InputError(f"max_new_tokens must be in 1..4096, got {max_new_tokens}")
    if temperature < 0 or not 0 < top_p <= 1:
        raise InputError("temperature must be >= 0 and top_p in (0, 1]")
    tokens = model.tokenize(prompt, prepend_bos)
    total = tokens.input_ids.shape[1] + max_new_tokens
    if model.context_length and total > model.context_length:
        raise InputError(
            f"prompt plus max_new_tokens is {total} tokens but {model.name} reads at most "
            f"{model.context_length}; shorten the prompt or ask for fewer tokens"
        )
    session = HookSession(model, [], [*model._active, *interventions], tokens.attention_mask.sum(1), total)
    sampling = temperature > 0
    options = dict(do_sample=sampling, max_new_tokens=max_new_tokens, pad_token_id=model.pad_token_id)
    if sampling:
        options.update(temperature=temperature, top_p=top_p, top_k=0)
    else:
        options.update(temperature=None, top_p=None, top_k=None)
    # Seeding must not disturb the caller's random state (CPU, and the model's GPU if any).
    gpus = [model.device.index or 0] if model.device.type == "cuda" else []
    rng = torch.random.fork_rng(devices=gpus) if seed is not None else contextlib.nullcontext()
    turn = _SAMPLING if sampling else contextlib.nullcontext()
    with turn, torch.inference_mode(), session, rng:
        if seed is not None:
            torch.manual_seed(seed)
        output = model.hf.generate(
            input_ids=tokens.input_ids.to(model.device),
            attention_mask=tokens.attention_mask.to(model.device),
            **options,
        )
    new_ids = output[0, tokens.input_ids.shape[1] :].tolist()
    return Generation(
        model=model.name,
        prompt=prompt,
        completion=model.tokenizer.decode(new_ids, skip_special_tokens=True),
        prompt_tokens=tokens.input_ids.shape[1],
        new_tokens=[model.tokenizer.decode([i]) for i in new_ids],
        new_token_ids=new_ids,
        temperature=temperature,
        seed=seed,
        interventions=len(session.bound),
    )
