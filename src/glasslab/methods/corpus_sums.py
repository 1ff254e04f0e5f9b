"""Sums over a corpus in units, the same in this process and on Ray (``--cluster``): what corpus statistics
(key statistics for editing, mean activations for ablation) are made of.

The driver packs the corpus into sequences and cuts them into units of consecutive sequences, a whole
number of batches each, so every forward pass sees the batches one sequential pass would. A ``SumJob`` turns
a unit into float64 partial sums and a token count; ``sum_units`` runs the job on every unit (here, or on Ray
workers, which finish in any order) and adds the partials in unit order, so the total is the same to the bit
wherever the units ran.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch

from ..cluster import ClusterSpec, UnitJob, run_units
from ..data import SequenceUnit, sequence_units
from ..model.model import Model

BATCHES_PER_UNIT = 8  # the work one worker is handed at a time, in batches of sequences


@dataclass(frozen=True)
class PartialSums:
    """A unit's float64 sums (on the CPU, to travel back from a worker) over ``count`` tokens."""

    sums: dict[str, torch.Tensor]
    count: int

    def __add__(self, other: PartialSums) -> PartialSums:
        added = {name: self.sums[name] + value if name in self.sums else value for name, value in other.sums.items()}
        return PartialSums({**self.sums, **added}, self.count + other.count)


class SumJob(UnitJob[SequenceUnit, PartialSums]):
    """A job that sums something over a unit's sequences (the same code in this process and on workers)."""


def plan_units(
    model: Model, documents: Iterable[str], seq_len: int, sequences: int, batch_size: int
) -> Iterator[SequenceUnit]:
    """``sequences`` packed sequences of ``documents`` in units of ``BATCHES_PER_UNIT`` batches, in order."""
    return sequence_units(model, documents, seq_len, batch_size * BATCHES_PER_UNIT, limit=sequences)


def sum_units(
    job: SumJob, units: Iterable[SequenceUnit], *, model: Model, spec: ClusterSpec, description: str, sequences: int
) -> PartialSums:
    """The units' partial sums added in unit order (one that finishes early waits for those before it), so
    the total does not depend on where or in which order the units ran. No units: empty sums, count 0."""
    waiting: dict[int, PartialSums] = {}
    total, next_unit = PartialSums({}, 0), 0
    for unit, part in run_units(
        job,
        units,
        model=model,
        spec=spec,
        description=description,
        total=sequences,
        weight=lambda unit: unit.tokens.shape[0],
        unit_name="sequence",
    ):
        waiting[unit.index] = part
        while next_unit in waiting:
            total += waiting.pop(next_unit)
            next_unit += 1
    return total
