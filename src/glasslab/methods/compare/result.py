"""Building blocks shared by the comparison results: a labelled grid of A, B and B - A, and ranked changes.

Every comparison answers "where do the two sides differ, and by how much?". A ``Grid`` holds one
quantity over two axes (layer x head, layer x position...) for both sides and their difference, so the
CLI, the JSON and the web panels all read the same numbers; a ``Change`` is one ranked difference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...views.figures import Bars, Heatmap
from ...views.result import Record


def finite(value: float | None) -> float | None:
    """JSON has no NaN: missing or undefined values become None."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True)
class Grid(Record):
    """One quantity on a [row, column] grid for side A, side B and the difference ``b - a``.

    ``a``/``b`` may be None where only the difference is defined (e.g. a distance between the sides).
    """

    title: str
    rows: list[str]
    cols: list[str]
    diff: list[list[float]]
    a: list[list[float]] | None = None
    b: list[list[float]] | None = None
    row_title: str = ""
    col_title: str = ""
    value_label: str = ""

    json_keys = ("title", "rows", "cols", "row_title", "col_title", "value_label", "a", "b", "diff")

    def _json_a(self) -> list[list[float | None]] | None:
        return _finite_grid(self.a)

    def _json_b(self) -> list[list[float | None]] | None:
        return _finite_grid(self.b)

    def _json_diff(self) -> list[list[float | None]] | None:
        return _finite_grid(self.diff)

    def heatmap(self) -> Heatmap:
        values = [[v if math.isfinite(v) else 0.0 for v in row] for row in self.diff]
        hover = []
        for i, row in enumerate(self.diff):
            cells = []
            for j, value in enumerate(row):
                text = f"{self.rows[i]} / {self.cols[j]}: "
                if self.a is not None and self.b is not None:
                    text += f"A {self.a[i][j]:.4g}, B {self.b[i][j]:.4g}, "
                cells.append(text + f"difference {value:.4g}")
            hover.append(cells)
        signed = self.a is not None
        return Heatmap(
            self.title,
            values,
            self.rows,
            self.cols,
            self.row_title,
            self.col_title,
            self.value_label,
            cell_text=[[f"{v:.2f}" for v in row] for row in values],
            hover=hover,
            diverging=signed,
        )


@dataclass(frozen=True)
class Change(Record):
    """One difference between the sides, for ranked lists ("what changed most")."""

    label: str
    a: float | None
    b: float | None
    diff: float  # b - a, or a distance when a/b are None

    def _json_a(self) -> float | None:
        return finite(self.a)

    def _json_b(self) -> float | None:
        return finite(self.b)

    def _json_diff(self) -> float | None:
        return finite(self.diff)


def _finite_grid(values: list[list[float]] | None) -> list[list[float | None]] | None:
    return None if values is None else [[finite(v) for v in row] for row in values]


def changes_bars(title: str, changes: list[Change], value_label: str) -> Bars:
    return Bars(
        title,
        [c.label for c in changes],
        [c.diff for c in changes],
        value_label,
        hover=[
            f"{c.label}: "
            + (f"A {c.a:.4g} -> B {c.b:.4g}, " if c.a is not None and c.b is not None else "")
            + f"difference {c.diff:.4g}"
            for c in changes
        ],
    )


def top_changes(changes: list[Change], k: int) -> list[Change]:
    """The ``k`` largest changes by size (NaNs last)."""
    return sorted(changes, key=lambda c: -abs(c.diff) if math.isfinite(c.diff) else math.inf)[:k]
