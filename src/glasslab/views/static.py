"""PNG and SVG figures with matplotlib (the optional ``figures`` extra)."""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import InputError
from .figures import Bars, Figure, Heatmap


def save_static(figure: Figure, path: Path) -> None:
    """Draw every panel of ``figure`` into one PNG or SVG file."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("PNG/SVG output needs matplotlib: pip install 'glasslab[figures]'") from None
    heights = [_panel_height(p) for p in figure.panels] or [2.0]
    fig, axes = plt.subplots(
        len(heights),
        1,
        figsize=(_width(figure), sum(heights) + 0.8),
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
        layout="constrained",
    )
    fig.suptitle(figure.title, fontsize=11)
    for ax, panel in zip(axes[:, 0], figure.panels, strict=False):
        if isinstance(panel, Heatmap):
            _draw_heatmap(fig, ax, panel)
        else:
            _draw_bars(ax, panel)
    fig.savefig(path, format=path.suffix[1:], dpi=130)
    plt.close(fig)


def _width(figure: Figure) -> float:
    cols = max((len(p.col_labels) for p in figure.panels if isinstance(p, Heatmap)), default=8)
    return min(max(6.0, 0.55 * cols + 2.5), 24.0)


def _panel_height(panel: Heatmap | Bars) -> float:
    rows = len(panel.row_labels) if isinstance(panel, Heatmap) else len(panel.labels)
    return min(max(1.6, 0.3 * rows + 0.8), 14.0)


def _draw_heatmap(fig, ax, h: Heatmap) -> None:
    values = h.values or [[0.0]]
    if h.diverging:
        bound = max((abs(v) for row in values for v in row), default=1.0) or 1.0
        image = ax.imshow(values, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
    else:
        image = ax.imshow(values, cmap="Blues", aspect="auto")
    ax.set_xticks(range(len(h.col_labels)), h.col_labels, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(h.row_labels)), h.row_labels, fontsize=7)
    ax.set_xlabel(h.col_title, fontsize=8)
    ax.set_ylabel(h.row_title, fontsize=8)
    ax.set_title(h.title, fontsize=9)
    if h.cell_text and len(h.col_labels) * len(h.row_labels) <= 600:
        for i, row in enumerate(h.cell_text):
            for j, text in enumerate(row):
                ax.text(j, i, text, ha="center", va="center", fontsize=5)
    colorbar = fig.colorbar(image, ax=ax, fraction=0.03)
    colorbar.set_label(h.value_label, fontsize=7)


def _draw_bars(ax, b: Bars) -> None:
    positions = range(len(b.labels))
    ax.barh(list(positions), b.values, color=["#c0392b" if v >= 0 else "#2e6fba" for v in b.values])
    ax.set_yticks(list(positions), b.labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(b.value_label, fontsize=8)
    ax.set_title(b.title, fontsize=9)
    if b.values and all(math.isfinite(v) for v in b.values):
        ax.axvline(0, color="#888", linewidth=0.6)
