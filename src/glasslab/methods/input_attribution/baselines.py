"""Baseline embeddings: what a token becomes when an attribution method "removes" it.

Every method here removes a token by replacing its embedding (the output of the ``embed`` hook) with
a baseline vector, never by deleting it, so positions, the sequence length and the BOS token stay as
they were. Choices:

- ``"pad"`` (default): the embedding of the tokenizer's pad token (its EOS where it has no pad token).
  A real row of the embedding matrix, so the model sees an input of the kind it was built for.
- ``"eos"``: the embedding of the end-of-sequence token.
- ``"zero"``: the zero vector, the classic integrated-gradients baseline (Sundararajan et al. 2017);
  it lies off the set of real embeddings (and RMS norms rescale it), so effects can be larger.
- ``"mean"``: the mean embedding over the whole vocabulary: the expected input when nothing is known
  about the token.
- ``"token:TEXT"``: the embedding of TEXT's first token (e.g. ``"token: the"``).

In families that add learned position embeddings after the token embedding (GPT-2), the position
part is kept: only the token's identity is removed.
"""

from __future__ import annotations

import weakref

import torch

from ...errors import InputError
from ...model.model import Model

BASELINES: tuple[str, ...] = ("pad", "eos", "zero", "mean", "token:TEXT")
_MEANS: weakref.WeakKeyDictionary[Model, torch.Tensor] = weakref.WeakKeyDictionary()
_CHUNK = 16384  # token ids embedded at once for the mean


def baseline_vector(model: Model, baseline: str) -> torch.Tensor:
    """[d_model] embedding that stands for a removed token (model dtype, model device)."""
    if baseline == "zero":
        return torch.zeros(model.d_model, dtype=model.dtype, device=model.device)
    if baseline == "mean":
        if model not in _MEANS:
            _MEANS[model] = _mean_embedding(model)
        return _MEANS[model]
    if baseline == "pad":
        return token_embedding(model, model.pad_token_id)
    if baseline == "eos":
        eos = model.tokenizer.eos_token_id
        if eos is None:
            raise InputError(f"{model.name}'s tokenizer has no EOS token; use baseline 'pad', 'zero' or 'mean'")
        return token_embedding(model, int(eos))
    if baseline.startswith("token:"):
        return token_embedding(model, model.token_id(baseline[len("token:") :], "baseline token"))
    raise InputError(f"unknown baseline '{baseline}'; choose one of {', '.join(BASELINES)}")


def token_embedding(model: Model, token_id: int) -> torch.Tensor:
    """What the ``embed`` hook gives for one token (including any scaling the family applies)."""
    return _embed(model, torch.tensor([token_id]))[0]


def _mean_embedding(model: Model) -> torch.Tensor:
    """Mean of the ``embed`` hook's value over every token id, in chunks."""
    total = torch.zeros(model.d_model, dtype=torch.float64, device=model.device)
    for chunk in torch.arange(model.vocab_size).split(_CHUNK):
        total += _embed(model, chunk).float().sum(0).double()  # float32 within a chunk, float64 across
    return (total / model.vocab_size).to(model.dtype)


def _embed(model: Model, ids: torch.Tensor) -> torch.Tensor:
    # The embedding module's own forward is the ``embed`` hook's value (Gemma's scaling included);
    # a full model.run would also build masks and rotary tables for nothing.
    with torch.inference_mode():
        return model.module(model.arch.embed)(ids.to(model.device)).clone()
