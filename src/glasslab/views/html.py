"""Self-contained HTML for results: tables, heatmaps and bars, no external assets.

Hovering a cell or bar shows its details (native tooltips), cells show their text, and each figure
carries its "what you see / how to read it / what it does not prove" notes. The same fragment is a
result's ``_repr_html_`` in notebooks and, wrapped by ``page``, an exported report.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from .figures import Bars, Figure, Heatmap

_STYLE = """
.gl-fig{font-family:system-ui,sans-serif;font-size:13px;color:#222;max-width:100%}
.gl-fig h3{margin:4px 0;font-size:15px}.gl-fig h4{margin:10px 0 4px;font-size:13px}
.gl-grid{border-collapse:collapse}.gl-grid td,.gl-grid th{padding:2px 4px;text-align:center;white-space:nowrap}
.gl-grid th{font-weight:normal;color:#555}.gl-grid td{min-width:34px;font-size:11px;border:1px solid #fff}
.gl-bar{display:flex;align-items:center;gap:6px;margin:1px 0}.gl-bar span.l{min-width:160px;text-align:right}
.gl-bar div.b{height:12px}.gl-note{color:#444;margin:2px 0}.gl-facts{color:#555}
table.glasslab td,table.glasslab th{padding:2px 8px;text-align:left}
"""


def html_table(headers: Sequence[str], rows: Sequence[Sequence[object]], caption: str = "") -> str:
    """A plain table; every cell is escaped."""
    head = "".join(f"<th>{escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    cap = f"<caption style='text-align:left'>{escape(caption)}</caption>" if caption else ""
    return f"<table class='glasslab'>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure_html(figure: Figure) -> str:
    """An HTML fragment (with its own style) for a figure."""
    parts = [f"<style>{_STYLE}</style><div class='gl-fig'><h3>{escape(figure.title)}</h3>"]
    if figure.extra:
        facts = " · ".join(f"{escape(k)}: {escape(v)}" for k, v in figure.extra.items())
        parts.append(f"<div class='gl-facts'>{facts}</div>")
    if figure.what_you_see:
        parts.append(f"<p class='gl-note'><b>What you see.</b> {escape(figure.what_you_see)}</p>")
    for panel in figure.panels:
        parts.append(_heatmap(panel) if isinstance(panel, Heatmap) else _bars(panel))
    if figure.how_to_read:
        parts.append(f"<details><summary>How to read it</summary><p>{escape(figure.how_to_read)}</p></details>")
    if figure.caveat:
        parts.append(f"<p class='gl-note'><b>What it does not prove.</b> {escape(figure.caveat)}</p>")
    parts.append("</div>")
    return "".join(parts)


def page(figure: Figure) -> str:
    """A complete HTML document for one figure (an exported report)."""
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{escape(figure.title)}</title></head><body>{figure_html(figure)}</body></html>"
    )


def _heatmap(h: Heatmap) -> str:
    flat = [v for row in h.values for v in row]
    low, high = (min(flat), max(flat)) if flat else (0.0, 1.0)
    bound = max(abs(low), abs(high)) or 1.0
    head = "".join(f"<th>{escape(c)}</th>" for c in h.col_labels)
    rows = []
    for i, row in enumerate(h.values):
        cells = []
        for j, value in enumerate(row):
            colour = _diverging(value / bound) if h.diverging else _sequential((value - low) / ((high - low) or 1.0))
            text = h.cell_text[i][j] if h.cell_text else ""
            tip = h.hover[i][j] if h.hover else f"{h.row_labels[i]} / {h.col_labels[j]}: {value:.4g}"
            cells.append(f"<td style='background:{colour}' title='{escape(tip, quote=True)}'>{escape(text)}</td>")
        rows.append(f"<tr><th>{escape(h.row_labels[i])}</th>{''.join(cells)}</tr>")
    axis = escape(f"{h.row_title} ↓ / {h.col_title} →" if h.row_title or h.col_title else "")
    scale = escape(f"{h.value_label}: {low:.3g} … {high:.3g}")
    return (
        f"<h4>{escape(h.title)}</h4><div style='overflow-x:auto'><table class='gl-grid'>"
        f"<tr><th>{axis}</th>{head}</tr>{''.join(rows)}</table></div><div class='gl-facts'>{scale}</div>"
    )


def _bars(b: Bars) -> str:
    bound = max((abs(v) for v in b.values), default=1.0) or 1.0
    rows = []
    for i, (label, value) in enumerate(zip(b.labels, b.values, strict=True)):
        width = 240 * abs(value) / bound
        colour = "#c0392b" if value >= 0 else "#2e6fba"
        tip = b.hover[i] if b.hover else f"{label}: {value:.4g}"
        rows.append(
            f"<div class='gl-bar' title='{escape(tip, quote=True)}'><span class='l'>{escape(label)}</span>"
            f"<div class='b' style='width:{width:.1f}px;background:{colour}'></div><span>{value:.4g}</span></div>"
        )
    return f"<h4>{escape(b.title)}</h4><div class='gl-facts'>{escape(b.value_label)}</div>{''.join(rows)}"


def _sequential(t: float) -> str:
    t = min(max(t, 0.0), 1.0)
    return f"rgb({int(255 - 200 * t)},{int(255 - 130 * t)},{int(255 - 40 * t)})"


def _diverging(t: float) -> str:
    t = min(max(t, -1.0), 1.0)
    if t >= 0:
        return f"rgb(255,{int(255 - 170 * t)},{int(255 - 170 * t)})"
    return f"rgb({int(255 + 170 * t)},{int(255 + 120 * t)},255)"


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
