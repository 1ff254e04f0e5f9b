"""Deadlines for the tests' waits: each only tells a hang from a slow machine, and never times anything
(timings belong in benchmarks/).

Each is a quiet developer machine's upper bound times SLOWDOWN, so that a busy two-core runner, ten times
slower, still passes, while a wait that is really hung still ends. GLASSLAB_TEST_SLOWDOWN overrides the
factor on a machine slower still (an emulated CPU, say).
"""

from __future__ import annotations

import os


def _slowdown() -> float:
    given = os.environ.get("GLASSLAB_TEST_SLOWDOWN", "10")
    try:
        value = float(given)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ValueError(f"GLASSLAB_TEST_SLOWDOWN must be a positive number (default 10), got {given!r}")
    return value


SLOWDOWN = _slowdown()
# One step of the workbench on a tiny model (a click, a request, a page load): under 12 s when quiet.
STEP_S = 12 * SLOWDOWN
# Real model work: a request on the default model, training a small SAE, starting a browser: under a minute.
MODEL_S = 60 * SLOWDOWN


def ms(seconds: float) -> float:
    """Seconds as the milliseconds Playwright's timeouts take."""
    return seconds * 1000
