"""Progress bars for long jobs (corpus scans, training), on stderr so ``--json`` output stays clean.

``GLASSLAB_PROGRESS=0`` turns them off (tests, logs); they are also off when stderr is not a terminal
unless ``GLASSLAB_PROGRESS=1``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_enabled() -> bool:
    setting = os.environ.get("GLASSLAB_PROGRESS")
    if setting is not None:
        return setting not in ("0", "false", "no")
    return sys.stderr.isatty()


def progress(items: Iterable[T], *, total: int | None = None, description: str = "", unit: str = "it") -> Iterator[T]:
    """Iterate over ``items`` with a progress bar (when enabled)."""
    yield from tqdm(items, total=total, desc=description, unit=unit, disable=not progress_enabled(), file=sys.stderr)
