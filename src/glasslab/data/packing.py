"""Documents -> fixed-length token sequences, the shape corpus methods train and scan on."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..errors import InputError

if TYPE_CHECKING:
    from ..model.model import Model


def packed_sequences(
    model: Model, documents: Iterable[str], seq_len: int, limit: int | None = None
) -> Iterator[torch.Tensor]:
    """Token sequences of exactly ``seq_len``: BOS, then documents' tokens back to back (EOS between).

    Each sequence starts with BOS (when the tokenizer has one) like every prompt glasslab runs, so
    position 0 behaves as it does in ``model.run``. Stops after ``limit`` sequences if given.
    """
    for tokens, _ in packed_with_documents(model, documents, seq_len, limit):
        yield tokens


def packed_with_documents(
    model: Model, documents: Iterable[str], seq_len: int, limit: int | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``packed_sequences`` with, for each token, the index of the document it came from (BOS: -1; an EOS
    belongs to the document it ends), so a sharded harvest can say where each row's text lies."""
    if seq_len < 2:
        raise InputError(f"seq_len must be at least 2, got {seq_len}")
    if model.context_length and seq_len > model.context_length:
        raise InputError(f"seq_len {seq_len} exceeds the model's context window of {model.context_length}")
    bos, eos = model.tokenizer.bos_token_id, model.tokenizer.eos_token_id
    head = [bos] if bos is not None else []
    body = seq_len - len(head)
    buffer: list[int] = []
    owners: list[int] = []
    made = 0
    for index, text in enumerate(documents):
        ids = model.tokenizer(text, add_special_tokens=False)["input_ids"] + ([eos] if eos is not None else [])
        buffer.extend(ids)
        owners.extend([index] * len(ids))
        while len(buffer) >= body:
            chunk, buffer = buffer[:body], buffer[body:]
            owned, owners = owners[:body], owners[body:]
            yield (
                torch.tensor(head + chunk, dtype=torch.long),
                torch.tensor([-1] * len(head) + owned, dtype=torch.long),
            )
            made += 1
            if limit is not None and made >= limit:
                return


@dataclass(frozen=True)
class SequenceUnit:
    """Consecutive packed sequences: unit ``index`` of a corpus job (a harvest shard, a slice of a scan or of
    a sum), whose first sequence is sequence ``first_sequence`` of the job."""

    index: int
    first_sequence: int
    tokens: torch.Tensor  # [sequences, seq_len]
    documents: torch.Tensor | None = None  # [sequences, seq_len]: each token's document (BOS -1), when kept


def sequence_units(
    model: Model, documents: Iterable[str], seq_len: int, unit_sequences: int, limit: int | None = None
) -> Iterator[SequenceUnit]:
    """The packed sequences of ``documents`` (at most ``limit``) cut every ``unit_sequences``, in order: the
    units a corpus job hands to its workers, the same wherever they run."""
    group: list[tuple[torch.Tensor, torch.Tensor]] = []
    index = first = 0
    for pair in packed_with_documents(model, documents, seq_len, limit):
        group.append(pair)
        if len(group) == unit_sequences:
            yield _unit(index, first, group)
            index, first, group = index + 1, first + len(group), []
    if group:
        yield _unit(index, first, group)


def _unit(index: int, first: int, group: list[tuple[torch.Tensor, torch.Tensor]]) -> SequenceUnit:
    return SequenceUnit(index, first, torch.stack([t for t, _ in group]), torch.stack([d for _, d in group]))


def batches(sequences: Iterable[torch.Tensor], batch_size: int) -> Iterator[torch.Tensor]:
    """Stack sequences into [batch, seq_len] tensors (the last batch may be smaller)."""
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    group: list[torch.Tensor] = []
    for sequence in sequences:
        group.append(sequence)
        if len(group) == batch_size:
            yield torch.stack(group)
            group = []
    if group:
        yield torch.stack(group)
