"""Figure descriptions: what a result wants drawn, independent of how (HTML, PNG, SVG).

A result's ``figure()`` returns a ``Figure`` of panels (heatmaps and bar charts). ``html.py`` renders
it as self-contained interactive HTML (notebooks, reports, the app); ``static.py`` as PNG or SVG.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Heatmap:
    """A grid of numbers: rows x columns, with optional text in each cell and hover details."""

    title: str
    values: list[list[float]]
    row_labels: list[str]
    col_labels: list[str]
    row_title: str = ""
    col_title: str = ""
    value_label: str = ""
    cell_text: list[list[str]] | None = None
    hover: list[list[str]] | None = None
    diverging: bool = False  # centre the colour scale at 0 (red positive, blue negative)


@dataclass(frozen=True)
class Bars:
    """Labelled horizontal bars (signed values allowed)."""

    title: str
    labels: list[str]
    values: list[float]
    value_label: str = ""
    hover: list[str] | None = None


@dataclass(frozen=True)
class Figure:
    """Panels plus the plain-English notes every view carries."""

    title: str
    panels: list[Heatmap | Bars]
    what_you_see: str = ""
    how_to_read: str = ""
    caveat: str = ""
    extra: dict[str, str] = field(default_factory=dict)  # small key/value facts shown under the title


@dataclass(frozen=True)
class Explanation:
    """One result's or panel's plain-English notes; texts may hold ``{name}`` fields its result fills in."""

    title: str
    see: str  # what you see
    read: str  # how to read it
    caveat: str  # what it does not prove
    notes: dict[str, str] = field(default_factory=dict)  # alternative sentences a result picks from

    def notes_for_figure(self, **values: object) -> dict[str, str]:
        """``Figure``'s ``what_you_see``/``how_to_read``/``caveat`` with the fields filled in."""
        return {
            "what_you_see": self.see.format(**values),
            "how_to_read": self.read.format(**values),
            "caveat": self.caveat.format(**values),
        }
