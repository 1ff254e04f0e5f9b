"""How ``run_units`` schedules units and stops workers, and how ``sum_units`` reports each unit it adds:

- with a look-ahead window, a slow first unit holds back the others, so no more than the window finish
  before it (without one, every other unit would);
- ``release_workers`` returns once the workers' processes have exited, so nothing they ran writes afterwards;
- ``sum_units`` adds to a given start and calls ``on_added`` in unit order, whatever order units arrive in.
"""

from __future__ import annotations

import os
import time

import pytest
import torch

import glasslab as gl
from glasslab.cluster import ClusterSpec, UnitJob, release_workers, run_units
from glasslab.data import SequenceUnit
from glasslab.methods import corpus_sums
from glasslab.methods.corpus_sums import PartialSums, SumJob, sum_units
from tests.ray_support import local_cluster

WORKERS = 2
UNITS = 12


class SlowFirst(UnitJob[int, int]):
    """Unit 0 takes a while; every other unit is instant. Each returns its worker's process id."""

    def run(self, model: gl.Model | None, unit: int) -> int:
        if unit == 0:
            time.sleep(2.0)
        return os.getpid()


@pytest.fixture(scope="module")
def cluster():
    with local_cluster(WORKERS) as spec:
        yield spec


def test_a_window_keeps_units_from_running_far_ahead_of_the_oldest(cluster):
    pairs = run_units(SlowFirst(), range(UNITS), model=None, spec=cluster, description="", ahead_per_worker=1)
    finished = [unit for unit, _ in pairs]
    assert sorted(finished) == list(range(UNITS))
    assert finished.index(0) < 1 * WORKERS  # at most the window's other units finished before the slow one


def test_released_workers_are_dead_when_release_returns(cluster):
    pids = {pid for _, pid in run_units(SlowFirst(), range(1, 5), model=None, spec=cluster, description="")}
    assert pids and os.getpid() not in pids
    release_workers()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


class Given(SumJob):
    """Partial sums 1, 2 and 4 (one token each)."""

    def run(self, model: gl.Model | None, unit: SequenceUnit) -> PartialSums:
        return PartialSums({"x": torch.tensor(float(2**unit.index), dtype=torch.float64)}, 1)


def test_sum_units_adds_to_its_start_and_reports_each_unit_in_order(monkeypatch):
    def backwards(job, units, **options):
        done = [(unit, job.run(None, unit)) for unit in units]
        yield from reversed(done)

    monkeypatch.setattr(corpus_sums, "run_units", backwards)
    units = [SequenceUnit(i, i, torch.zeros(1, 2, dtype=torch.long)) for i in range(3)]
    seen: list[tuple[int, float, int]] = []
    start = PartialSums({"x": torch.tensor(100.0, dtype=torch.float64)}, 10)

    def added(unit: SequenceUnit, total: PartialSums) -> None:
        seen.append((unit.index, float(total.sums["x"]), total.count))

    total = sum_units(
        Given(), units, model=None, spec=ClusterSpec(), description="", sequences=3, start=start, on_added=added
    )
    assert seen == [(0, 101.0, 11), (1, 103.0, 12), (2, 107.0, 13)]
    assert float(total.sums["x"]) == 107.0 and total.count == 13
