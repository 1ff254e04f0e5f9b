"""Commands of knowledge editing: ``trace`` (causal tracing of a fact) and ``edit`` (ROME / MEMIT, evaluated),
declared in ``glasslab.operations.edit``: here only how their results read."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from ..methods.editing import EditEvaluation
from ..methods.editing.tracing import CausalTrace
from ..operations import OPERATIONS
from .app import out
from .derived import declare_command


def show_trace(result: CausalTrace) -> None:
    for kind in result.kinds:
        layer, position, prob = result.peak(kind)
        table = Table(
            title=escape(
                f"restoring {kind}: p({result.target!r}) (clean {result.clean_prob:.3f}, "
                f"corrupted {result.corrupted_prob:.3f})"
            ),
            caption=escape(f"peak: L{layer} at {position} {result.tokens[position]!r}, p = {prob:.3f}; * = subject"),
        )
        table.add_column("layer", justify="right")
        for label in result.column_labels():
            table.add_column(escape(label), justify="right")
        for layer_index, row in zip(result.layers, result.scores[kind], strict=True):
            table.add_row(f"L{layer_index}", *(f"{v:.2f}" for v in row))
        out.print(table)


def show_edit(result: EditEvaluation) -> None:
    """The edit's evaluation as a table, then each fact's new probabilities and a continuation after the edit."""
    result_edit, method, n_facts = result.edit, result.method, len(result.facts)
    table = Table(
        title=escape(f"{method.upper()} at layers {', '.join(map(str, result_edit.layers))}: {n_facts} fact(s)"),
        caption="means over the facts; efficacy/generalisation/specificity are shares of prompts",
    )
    for column in ("measure", "before", "after"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    for row in result.table():
        table.add_row(*row)
    out.print(table)
    for fact, after in zip(result.facts, result.after, strict=True):
        out.print(escape(f"{fact.describe()}: p(new) {after.p_new:.3f}, p(true) {after.p_true:.3f}"), highlight=False)
        for text in after.texts[:1]:
            out.print(escape(f"  after: {fact.text}{text}".replace("\n", " ")), highlight=False)
    if result_edit.path:
        out.print(f"saved to {escape(str(result_edit.path))}", highlight=False)


declare_command(OPERATIONS["trace"], show_trace)
declare_command(OPERATIONS["edit"], show_edit)
