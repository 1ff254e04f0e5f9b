"""Where a transcoder set's training rows come from: every listed layer's (mlp.in, mlp_out) pair side by side,
read from the model (``TranscodersStream``) or from a harvest (``HarvestedPairs``), and each layer's view of
the shared shuffle buffer (``LayerRows``). Apart from ``transcoder_train.py`` so that its loop and job fit in
one module."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ..activations import HarvestedRows
from ..data import load_corpus
from ..errors import InputError
from ..model.model import Model
from .activations import ActivationStream, ShuffleBuffer, harvested_rows, skips_bos
from .training import Batch

if TYPE_CHECKING:
    from .transcoder_train import TranscoderTrainConfig


@dataclass
class TranscodersStream(ActivationStream):
    """Rows of every listed layer's (mlp.in, mlp_out) side by side: ``[in_0, out_0, in_1, out_1, ...]``,
    each ``d_model`` wide, from one forward pass per batch of sequences (stopped after the last layer)."""

    layers: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        self.hooks = pair_hooks(self.layers)
        self.width = len(self.hooks) * self.model.d_model
        self.stop = max(self.layers) + 1
        self.rows_per_sequence = self.seq_len - (1 if skips_bos(self.model) else 0)
        if self.rows_per_sequence < 1:
            raise InputError(f"seq_len {self.seq_len} leaves no token after BOS; use at least 2")
        self.rows_per_batch = self.rows_per_sequence * self.batch_size

    def _activations(self, batch: torch.Tensor) -> torch.Tensor:
        run = self.model.run(batch, cache=self.hooks, logits=False, stop_at_layer=self.stop)
        act = torch.cat([run.cache[hook] for hook in self.hooks], dim=-1)
        if skips_bos(self.model):
            act = act[:, 1:]
        rows = act.reshape(-1, self.width).float().cpu()
        if not torch.isfinite(rows).all():
            raise InputError("the model produced NaN or infinite MLP activations; load it in float32")
        return rows

    def pair(self, rows: torch.Tensor, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return layer_pair(rows, index, self.model.d_model)


class HarvestedPairs(HarvestedRows):
    """The same rows as ``TranscodersStream``, read from a harvest of every layer's mlp.in and mlp_out."""

    def pair(self, rows: torch.Tensor, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return layer_pair(rows, index, self.width // len(self.hooks))


def layer_pair(rows: torch.Tensor, index: int, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``index``-th listed layer's (input, target) columns of ``[in_0, out_0, in_1, out_1, ...]`` rows."""
    return rows[:, 2 * index * d : (2 * index + 1) * d], rows[:, (2 * index + 1) * d : (2 * index + 2) * d]


def pair_hooks(layers: Iterable[int]) -> list[str]:
    """Each layer's MLP input and output hooks, in the order the rows hold them."""
    return [hook for layer in layers for hook in (f"blocks.{layer}.mlp.in", f"blocks.{layer}.mlp_out")]


def pair_stream(
    model: Model, config: TranscoderTrainConfig, layers: tuple[int, ...], documents: Iterable[str] | None
) -> TranscodersStream | HarvestedPairs:
    """Every layer's (input, output) rows: from a harvest (``config.activations``) or the model on the corpus."""
    if config.activations is not None:
        return harvested_rows(model, config, pair_hooks(layers), HarvestedPairs)
    docs = documents if documents is not None else load_corpus(config.corpus, split="train")
    return TranscodersStream(
        model, config.hook, docs, config.seq_len, config.model_batch, max_rows=config.harvest_tokens, layers=layers
    )


class LayerRows:
    """One layer's view of the shared buffer: ``next_batch`` hands out that layer's columns of the batch
    drawn for this step (every layer trains on the same tokens), ``peek`` those of the buffer's next rows."""

    def __init__(self, buffer: ShuffleBuffer, stream: TranscodersStream | HarvestedPairs, index: int) -> None:
        self.buffer, self.stream, self.index = buffer, stream, index
        self.current: torch.Tensor | None = None

    def peek(self, n: int) -> Batch:
        return self.stream.pair(self.buffer.peek(n), self.index)

    def next_batch(self, n: int) -> Batch:
        if self.current is None:
            raise RuntimeError("the shared batch was not drawn for this step")
        return self.stream.pair(self.current, self.index)


class RestoredAlready:
    """The buffer for every layer's checkpoint after the first: its state is saved with each, restored once."""

    def __init__(self, buffer: ShuffleBuffer) -> None:
        self.buffer = buffer

    def state(self) -> dict[str, Any]:
        return self.buffer.state()

    def restore(self, state: dict[str, Any]) -> None:
        return None
