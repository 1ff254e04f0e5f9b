"""The one place every explanation is read from: results' figures (notebook, report, CLI exports) and the
workbench (served by ``GET /api/explanations``), so a text is written once and cannot drift between them."""

from __future__ import annotations

from dataclasses import asdict

from .figures import Explanation
from .result_texts import RESULTS
from .workbench_texts import CONTROLS, PANELS, TUTORIAL


def explanation(kind: str, **values: object) -> dict[str, str]:
    """The figure notes of result ``kind`` (``what_you_see``, ``how_to_read``, ``caveat``), fields filled in."""
    return RESULTS[kind].notes_for_figure(**values)


def note(kind: str, name: str, **values: object) -> str:
    """One of result ``kind``'s alternative sentences, fields filled in."""
    return RESULTS[kind].notes[name].format(**values)


def caveat(kind: str) -> str:
    """What result ``kind`` does not prove (for a CLI to print under its table)."""
    return RESULTS[kind].caveat


def catalogue() -> dict:
    """Every explanation as JSON: results by kind, the workbench's panels, control tooltips and tutorial."""
    return {
        "results": {kind: _texts(entry) for kind, entry in RESULTS.items()},
        "panels": {panel: _texts(entry, notes=False) for panel, entry in PANELS.items()},
        "controls": dict(CONTROLS),
        "tutorial": [dict(step) for step in TUTORIAL],
    }


def _texts(entry: Explanation, *, notes: bool = True) -> dict:
    texts = asdict(entry)
    return texts if notes else {k: v for k, v in texts.items() if k != "notes"}
