"""Activations for SAE training: streamed from a corpus through the model, shuffled in a bounded buffer.

The forward pass stops right after the hooked layer (no later blocks, no unembedding), which is most of
the cost of training an SAE on an early or middle layer. BOS positions are left out: the first token's
residual stream is an attention sink whose norm is more than ten times a typical token's (about 55,000
vs 3,300 at ``blocks.6.resid_post`` of Gemma 3 270M), the same vector for every sequence. Kept, it
would dominate the squared error and the normalisation scale while teaching the SAE nothing; SAEs are
spliced in only after BOS for the same reason (see ``evaluate.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any, TypeVar

import torch

from ..activations.reader import HarvestedRows
from ..activations.rows import hook_rows, hook_width, rows_per_sequence, skips_bos, stop_layer
from ..data import batches, packed_sequences
from ..data.corpus import canonical_corpus
from ..errors import InputError
from ..model.model import Model


@dataclass
class ActivationStream:
    """Rows (one per non-BOS token) at ``hook`` in a fixed order, restartable at any row.

    Restarting re-reads the corpus from the start but runs the model only from the model batch that holds
    the requested row, with the same batch grid as before, so a resumed training sees bit-identical rows.
    """

    model: Model
    hook: str
    documents: Iterable[str]
    seq_len: int = 128
    batch_size: int = 16  # sequences per forward pass
    head_index: int | None = None
    max_rows: int | None = None  # stop after this many rows (the harvest budget)

    def __post_init__(self) -> None:
        self.width = hook_width(self.model, self.hook, self.head_index)
        self.stop = stop_layer(self.model, self.hook)
        self.rows_per_sequence = rows_per_sequence(self.model, self.seq_len)
        if self.rows_per_sequence < 1:
            raise InputError(f"seq_len {self.seq_len} leaves no token after BOS; use at least 2")
        self.rows_per_batch = self.rows_per_sequence * self.batch_size

    def rows(self, start: int = 0) -> Iterator[torch.Tensor]:
        """[n, d_in] float32 chunks, beginning exactly at row ``start``."""
        first_batch = start // self.rows_per_batch
        drop = start - first_batch * self.rows_per_batch
        left = None if self.max_rows is None else self.max_rows - start
        sequences = islice(
            packed_sequences(self.model, self.documents, self.seq_len), first_batch * self.batch_size, None
        )
        for batch in batches(sequences, self.batch_size):
            if left is not None and left <= 0:
                return
            chunk = self._activations(batch)[drop:]
            drop = 0
            if left is not None:
                chunk = chunk[:left]
                left -= chunk.shape[0]
            yield chunk

    def _activations(self, batch: torch.Tensor) -> torch.Tensor:
        run = self.model.run(batch, cache=[self.hook], logits=False, stop_at_layer=self.stop)
        act = hook_rows(self.model, self.hook, run.cache[self.hook], self.head_index)
        if skips_bos(self.model):
            act = act[:, 1:]
        rows = act.reshape(-1, self.width).float().cpu()
        if not torch.isfinite(rows).all():
            raise InputError(f"the model produced NaN or infinite activations at '{self.hook}'; load it in float32")
        return rows


class ShuffleBuffer:
    """A bounded pool of activations that hands out shuffled batches.

    The pool is always the last ``capacity`` rows read from the stream, so memory stays at
    ``capacity * d_in`` floats whatever the corpus size. Batches are drawn in a random order over the
    whole pool, so consecutive batches mix text from many documents; once the pool's order is used up,
    fresh rows replace the oldest ones and the pool is reshuffled. When the stream is exhausted the pool
    is reshuffled and reused: with a pool as large as the corpus that is plain multi-epoch training.
    Its state (``state``/``restore``) is a few numbers and the shuffle order, never the rows themselves:
    restoring re-reads the pool's rows from the stream.
    """

    def __init__(self, stream: ActivationStream, capacity: int, *, seed: int) -> None:
        if capacity < 1:
            raise InputError(f"the activation buffer must hold at least one row, got {capacity}")
        self.stream = stream
        self.capacity = capacity
        self.generator = torch.Generator().manual_seed(seed)
        self.pool = torch.empty(0, stream.width)
        self.read = 0  # rows read from the stream so far; the pool holds rows [read - len(pool), read)
        self.exhausted = False
        self.epochs = 0  # reshuffles of a pool with no fresh rows
        self._chunks: Iterator[torch.Tensor] | None = None
        self._pending: torch.Tensor | None = None
        self._order = torch.empty(0, dtype=torch.long)
        self._cursor = 0

    def _take(self, n: int) -> torch.Tensor:
        """Up to ``n`` fresh rows (fewer once the stream ends)."""
        if self._chunks is None:
            self._chunks = self.stream.rows(self.read)
        got, have = [], 0
        while have < n and not self.exhausted:
            chunk, self._pending = (
                (self._pending, None) if self._pending is not None else (next(self._chunks, None), None)
            )
            if chunk is None:
                self.exhausted = True
                break
            if have + chunk.shape[0] > n:
                chunk, self._pending = chunk[: n - have], chunk[n - have :]
            got.append(chunk)
            have += chunk.shape[0]
        self.read += have
        return torch.cat(got) if got else torch.empty(0, self.stream.width)

    def next_batch(self, size: int) -> torch.Tensor:
        """``size`` rows in random order (fewer only if the whole pool is smaller)."""
        if self._cursor + size > self._order.shape[0]:
            self._advance()
        index = self._order[self._cursor : self._cursor + size]
        self._cursor += index.shape[0]
        return self.pool[index]

    def peek(self, size: int) -> torch.Tensor:
        """The next ``size`` rows ``next_batch`` would hand out, without handing them out."""
        if self._order.shape[0] == 0:
            self._advance()
        return self.pool[self._order[self._cursor : self._cursor + size]]

    def _advance(self) -> None:
        fresh = self._take(self.capacity) if not self.exhausted else self.pool[:0]
        if fresh.shape[0]:
            self.pool = torch.cat([self.pool, fresh])[-self.capacity :]
        elif self.pool.shape[0]:
            self.epochs += 1
        if self.pool.shape[0] == 0:
            raise InputError("the corpus gave no tokens; give a corpus with some text")
        self._order = torch.randperm(self.pool.shape[0], generator=self.generator)
        self._cursor = 0

    # -- checkpoints --------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "pool_rows": int(self.pool.shape[0]),
            "exhausted": self.exhausted,
            "epochs": self.epochs,
            "cursor": self._cursor,
            "order": self._order.clone(),
            "generator": self.generator.get_state(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Re-read the pool's rows from the stream and continue exactly where ``state`` was taken."""
        start = int(state["read"]) - int(state["pool_rows"])
        self.read, self.exhausted, self._pending = start, False, None
        self._chunks = self.stream.rows(start)
        self.pool = self._take(int(state["pool_rows"]))
        if self.pool.shape[0] != int(state["pool_rows"]):
            raise InputError("the corpus changed since the checkpoint was written; start the training afresh")
        self.exhausted = bool(state["exhausted"])
        self.epochs = int(state["epochs"])
        self._cursor = int(state["cursor"])
        self._order = state["order"].long()
        self.generator.set_state(state["generator"])


Rows = TypeVar("Rows", bound=HarvestedRows)


def harvested_rows(model: Model, config: Any, hooks: list[str], kind: type[Rows] = HarvestedRows) -> Rows:
    """``config.activations``'s rows at ``hooks`` (side by side, read by ``kind``), checked to be this model's
    and to come from the corpus and sequence length ``config`` (a ``TrainConfig``) names, which the trained
    dictionary records as its own."""
    if config.head_index is not None:
        raise InputError("a harvest holds every head of a per-head hook; train on it without a head index")
    rows = kind(config.activations, hooks, model_key=model.key, max_rows=config.harvest_tokens)
    harvested = rows.manifest.settings
    if (canonical_corpus(harvested.corpus), harvested.seq_len) != (canonical_corpus(config.corpus), config.seq_len):
        raise InputError(
            f"the harvest read {harvested.corpus} in sequences of {harvested.seq_len} tokens; pass the same "
            f"corpus and seq_len (the trained dictionary records them), not {config.corpus} and {config.seq_len}"
        )
    return rows
