"""The ``attribute`` command: which prompt tokens made the model predict a token, by one or several methods
(declared in ``glasslab.operations.attribute``: here only how its results read)."""

from __future__ import annotations

from rich import box
from rich.markup import escape
from rich.table import Table

from ..methods.input_attribution import METHODS, AttributionComparison, InputAttribution
from ..operations import OPERATIONS
from .app import out
from .derived import declare_command


def _caption(target: dict, full: float, base: float, baseline: str) -> str:
    return f"{target['description']}: f(prompt) = {full:.4g}, f(baseline '{baseline}') = {base:.4g}"


def _show_one(result: InputAttribution) -> None:
    table = Table(
        title=escape(f"{result.label} · {result.model}"),
        caption=escape(_caption(result.target, result.full_value, result.baseline_value, result.baseline)),
    )
    for column in ("pos", "token", "score"):
        table.add_column(column, justify="left" if column == "token" else "right")
    errors = result.stderr or [None] * len(result.scores)
    for position, token, score, error in zip(
        result.positions, result.attributed_tokens, result.scores, errors, strict=True
    ):
        table.add_row(
            str(position), escape(repr(token)), f"{score:+.4g}" + ("" if error is None else f" ± {error:.2g}")
        )
    out.print(table)
    if result.completeness_error is not None:
        out.print(f"completeness error |sum - (f(prompt) - f(baseline))| = {result.completeness_error:.3g}")
    out.print(f"{result.evaluations} model evaluations, {result.seconds:.2f} s", highlight=False)


def _show_comparison(result: AttributionComparison) -> None:
    table = Table(
        title=escape(f"input attribution · {result.model} · most faithful first"),
        caption=escape(_caption(result.target, result.full_value, result.baseline_value, result.baseline)),
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        collapse_padding=True,
        pad_edge=False,
    )
    table.add_column("pos", justify="right")
    table.add_column("token")
    for ranked in result.methods:
        table.add_column(escape(f"{ranked.rank}.{METHODS[ranked.attribution.method].short}"), justify="right")
    for i, position in enumerate(result.positions):
        scores = [f"{m.attribution.scores[i]:.2g}" for m in result.methods]
        table.add_row(str(position), escape(repr(result.tokens[position])), *scores)
    table.add_section()
    measures = (
        ("faithful", "score"),
        ("ins AUC", "insertion_auc"),
        ("del AUC", "deletion_auc"),
        ("compreh", "comprehensiveness"),
        ("suffic", "sufficiency"),
    )
    for label, field in measures:
        table.add_row("", label, *[f"{getattr(m.faithfulness, field):.2g}" for m in result.methods])
    out.print(table)
    out.print(
        "faithful = insertion AUC - deletion AUC (higher is better); compreh/suffic: ERASER comprehensiveness "
        "(higher is better) and sufficiency (lower is better), in the target's units",
        highlight=False,
    )
    random = result.random
    out.print(
        f"random order ({result.random_orders} seeded): faithfulness {random.score:+.3g}, insertion AUC "
        f"{random.insertion_auc:+.3g}, deletion AUC {random.deletion_auc:+.3g}. "
        f"{result.forward_rows} model rows, {result.seconds:.1f} s",
        highlight=False,
    )


def show_attribution(result: InputAttribution | AttributionComparison) -> None:
    if isinstance(result, AttributionComparison):
        _show_comparison(result)
    else:
        _show_one(result)


declare_command(OPERATIONS["attribute"], show_attribution)
