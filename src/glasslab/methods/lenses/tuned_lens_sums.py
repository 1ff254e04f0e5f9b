"""The tuned lens's least-squares sums (X^T X, X^T Y per layer), streamed over a corpus in this process or on
Ray (``cluster=``): one ``LensSumJob``, the same code in both places.

The sequences still to sum are cut into units of whole batches (one batch here, so the sums are added batch
by batch as they always were; ``BATCHES_PER_UNIT`` batches on Ray, fewer round trips of the sums). The
driver adds the units' float64 partials to the running sums in unit order (``corpus_sums.sum_units``, which
bounds how many finished units wait), whatever order Ray workers finish them in, and checkpoints after a unit
once ``checkpoint_every`` batches were added since the last checkpoint:
a checkpoint never holds a unit whose predecessors are missing, so a resumed fit, here or on Ray, continues
from the first sequence it lacks. Units finished out of order when a run stops are summed again by the next.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ...cluster import ClusterSpec
from ...data import SequenceUnit, batches, packed_sequences
from ...errors import InputError
from ...model.model import Model
from ...store import TUNED_LENS, save, verify
from ..corpus_sums import BATCHES_PER_UNIT, PartialSums, SumJob, sum_units
from .tuned_lens_artifact import _normalise

_SUMS, _STATE = "sums.safetensors", "state.json"


@dataclass
class LensSums:
    """Running sums over ``sequences`` packed sequences (``tokens`` tokens after BOS): ``gram`` [n_layers,
    d+1, d+1] and ``cross`` [n_layers, d+1, d], float64; n_layers translators (embeddings and layers 0..n-2)."""

    gram: torch.Tensor
    cross: torch.Tensor
    sequences: int = 0
    tokens: int = 0

    @classmethod
    def empty(cls, model: Model) -> LensSums:
        n, d = model.n_layers, model.d_model
        return cls(torch.zeros(n, d + 1, d + 1, dtype=torch.float64), torch.zeros(n, d + 1, d, dtype=torch.float64))


def _features(run, name: str) -> torch.Tensor:
    """[tokens, d_model + 1]: the normalised residual at positions 1.. with a constant 1 for the bias, float64."""
    h = run.cache[name][:, 1:].reshape(-1, run.cache[name].shape[-1]).double()
    return torch.cat([_normalise(h), torch.ones(h.shape[0], 1, dtype=h.dtype, device=h.device)], dim=1)


@dataclass(frozen=True)
class LensSumJob(SumJob):
    """A unit's X^T X and X^T Y: X each translator's input hook (``hooks[:-1]``), Y the last one, BOS left out."""

    hooks: tuple[str, ...]
    batch_size: int

    def run(self, model: Model | None, unit: SequenceUnit) -> PartialSums:
        assert model is not None
        sums = LensSums.empty(model)
        for batch in unit.tokens.split(self.batch_size):
            run = model.run(batch, cache=list(self.hooks), logits=False)
            target = _features(run, self.hooks[-1])[:, : model.d_model].cpu()
            for i, name in enumerate(self.hooks[:-1]):
                x = _features(run, name).cpu()
                sums.gram[i] += x.T @ x
                sums.cross[i] += x.T @ target
        return PartialSums({"gram": sums.gram, "cross": sums.cross}, unit.tokens.shape[0] * (unit.tokens.shape[1] - 1))


def lens_units(
    model: Model, source, seq_len: int, start: int, stop: int, unit_sequences: int
) -> Iterator[SequenceUnit]:
    """Packed sequences ``start``..``stop`` of ``source`` in units of ``unit_sequences``, numbered from 0."""
    sequences = itertools.islice(packed_sequences(model, source, seq_len, stop), start, None)
    for index, tokens in enumerate(batches(sequences, unit_sequences)):
        yield SequenceUnit(index, start + index * unit_sequences, tokens)


def add_units(
    job: LensSumJob,
    units: Iterator[SequenceUnit],
    sums: LensSums,
    *,
    model: Model,
    spec: ClusterSpec,
    batches_left: int,
    checkpoint_every: int,
    checkpoint: Callable[[LensSums], None],
) -> None:
    """Add the units' partial sums to ``sums`` in unit order (``sums`` is updated as each is added), calling
    ``checkpoint`` after a unit once ``checkpoint_every`` batches were added since the last one, and at the
    end if any were."""
    since_checkpoint = 0

    def batches_of(unit: SequenceUnit) -> int:
        return math.ceil(unit.tokens.shape[0] / job.batch_size)

    def added(unit: SequenceUnit, total: PartialSums) -> None:
        nonlocal since_checkpoint
        sums.gram, sums.cross, sums.tokens = total.sums["gram"], total.sums["cross"], total.count
        sums.sequences += unit.tokens.shape[0]
        since_checkpoint += batches_of(unit)
        if since_checkpoint >= checkpoint_every:
            checkpoint(sums)
            since_checkpoint = 0

    sum_units(
        job,
        units,
        model=model,
        spec=spec,
        description="tuned lens: least squares",
        sequences=batches_left,
        start=PartialSums({"gram": sums.gram, "cross": sums.cross}, sums.tokens),
        on_added=added,
        weight=batches_of,
        unit_name="batch",
    )
    if since_checkpoint:
        checkpoint(sums)


def unit_sequences(spec: ClusterSpec, batch_size: int) -> int:
    """Sequences per unit: one batch here (the sums added as one pass adds them), several on Ray."""
    return batch_size * (BATCHES_PER_UNIT if spec.distributed else 1)


def save_sums(folder: Path, fingerprint: dict, sums: LensSums) -> None:
    """Checkpoint the running sums atomically, with what they were summed over."""
    summary = {"sequences": sums.sequences, "tokens": sums.tokens}
    with save(TUNED_LENS, fingerprint["key"], folder, summary=summary) as tmp:
        save_file({"gram": sums.gram.contiguous(), "cross": sums.cross.contiguous()}, str(tmp / _SUMS))
        state = {**fingerprint, **summary}
        (tmp / _STATE).write_text(json.dumps(state, indent=2), encoding="utf-8")


def load_sums(model: Model, folder: Path, fingerprint: dict) -> LensSums | None:
    """The checkpoint's sums if it exists and was made by the same model, corpus and sequence length."""
    if not (folder / _STATE).exists():
        return None
    try:
        verify(folder, TUNED_LENS)  # a checkpoint that lost or cut a file is not resumed from
        state = json.loads((folder / _STATE).read_text(encoding="utf-8"))
        tensors = load_file(str(folder / _SUMS))
        gram, cross = tensors["gram"], tensors["cross"]
        shape_ok = gram.shape == (model.n_layers, model.d_model + 1, model.d_model + 1)
    except (OSError, ValueError, KeyError, SafetensorError):
        raise InputError(
            f"the tuned-lens checkpoint in {folder} is unreadable; delete it, or start over (--fresh / resume=False)"
        ) from None
    if not shape_ok or any(state.get(k) != v for k, v in fingerprint.items()):
        raise InputError(
            f"the tuned-lens checkpoint in {folder} was made with other settings ({state.get('corpus')}, seq_len "
            f"{state.get('seq_len')}); use those, or start over (--fresh / resume=False)"
        )
    return LensSums(gram, cross, int(state["sequences"]), int(state["tokens"]))
