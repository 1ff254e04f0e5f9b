"""Sums over a corpus in units, the same in this process and on Ray (``--cluster``): what corpus statistics
(key statistics for editing, mean activations for ablation) are made of.

The driver packs the corpus into sequences and cuts them into units of consecutive sequences, a whole
number of batches each, so every forward pass sees the batches one sequential pass would. A ``SumJob`` turns
a unit into float64 partial sums and a token count; ``sum_units`` runs the job on every unit (here, or on Ray
workers, which finish in any order) and adds the partials in unit order, so the total is the same to the bit
wherever the units ran. A unit that finishes early waits in memory for those before it; Ray hands out no unit
more than ``AHEAD_PER_WORKER`` x workers units past the oldest unfinished one (``run_units``), so at most
that many partials ever wait (a tuned lens's partial on a 270M model is ~118 MB).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch

from ..cluster import ClusterSpec, UnitJob, run_units
from ..data import SequenceUnit, sequence_units
from ..model.model import Model

BATCHES_PER_UNIT = 8  # the work one worker is handed at a time, in batches of sequences
AHEAD_PER_WORKER = 4  # units per worker handed out past the oldest unfinished one: 2 running, 2 queued or waiting


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
    job: SumJob,
    units: Iterable[SequenceUnit],
    *,
    model: Model,
    spec: ClusterSpec,
    description: str,
    sequences: int,
    start: PartialSums | None = None,
    on_added: Callable[[SequenceUnit, PartialSums], None] | None = None,
    weight: Callable[[SequenceUnit], int] = lambda unit: unit.tokens.shape[0],
    unit_name: str = "sequence",
) -> PartialSums:
    """The units' partial sums added to ``start`` (default: nothing) in unit order (one that finishes early
    waits for those before it), so the total does not depend on where or in which order the units ran; units
    are numbered from 0. ``on_added(unit, total)`` follows each unit added (a checkpoint may save the total).
    The progress bar counts ``weight(unit)`` per unit of ``sequences`` in all. No units: ``start``."""
    waiting: dict[int, tuple[SequenceUnit, PartialSums]] = {}
    total, next_unit = start or PartialSums({}, 0), 0
    for unit, part in run_units(
        job,
        units,
        model=model,
        spec=spec,
        description=description,
        total=sequences,
        weight=weight,
        unit_name=unit_name,
        ahead_per_worker=AHEAD_PER_WORKER,
    ):
        waiting[unit.index] = (unit, part)
        while next_unit in waiting:
            added, part = waiting.pop(next_unit)
            total += part
            next_unit += 1
            if on_added is not None:
                on_added(added, total)
    return total
