"""Shared timing for the benchmark scripts: interleaved repeats, medians.

Contenders run in turn within each repeat, so a slow spell of the machine hits all of them alike,
and the median drops the odd outlier; ratios between contenders of one run are the figures to quote.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved_medians(contenders: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per contender, after one warm-up call each."""
    for fn in contenders.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}
