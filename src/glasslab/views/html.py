"""Small self-contained HTML pieces for results' ``_repr_html_`` (no external assets)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape


def html_table(headers: Sequence[str], rows: Sequence[Sequence[object]], caption: str = "") -> str:
    """A plain table; every cell is escaped."""
    head = "".join(f"<th style='text-align:left;padding:2px 8px'>{escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td style='padding:2px 8px'>{escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    cap = f"<caption style='text-align:left'>{escape(caption)}</caption>" if caption else ""
    return f"<table class='glasslab'>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
