"""Commands that trace circuits: path-patch and circuit (declared in ``glasslab.operations.circuits`` and
``.patching``: here only how their results read)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..methods.patch.circuit import Circuit
from ..methods.patch.path_patching import PathPatching
from ..operations import OPERATIONS
from .app import out
from .derived import declare_command


def show_path_patching(result: PathPatching, top: int = 20) -> None:
    table = Table(
        title=escape(f"path patching ({result.direction}) of {result.metric} into {', '.join(result.receivers)}"),
        caption=escape(f"clean {result.clean_value:.4f}, corrupted {result.corrupted_value:.4f}"),
    )
    for column in ("senders", "metric", "change", "share of difference"):
        table.add_column(column, justify="left" if column == "senders" else "right")
    for r in sorted(result.rows, key=lambda r: -abs(r.effect))[:top]:
        table.add_row(r.label, f"{r.value:.4f}", f"{r.effect:+.4f}", f"{r.fraction:+.1%}")
    out.print(table)


TopRowsOpt = Annotated[int, typer.Option(help="Rows to show in the table.")]
declare_command(OPERATIONS["path-patch"], show_path_patching, display={"top": (TopRowsOpt, 20)})


def show_circuit(result: Circuit) -> None:
    nodes = Table(
        title=escape(f"components that move {result.metric} most"),
        caption=escape(f"clean {result.clean_value:.4f}, corrupted {result.corrupted_value:.4f}"),
    )
    nodes.add_column("component")
    nodes.add_column("share of difference", justify="right")
    nodes.add_column("metric when patched", justify="right")
    for n in result.nodes:
        if n.effect is not None:
            nodes.add_row(n.id, f"{n.effect:+.1%}", f"{n.raw:.4f}")
    out.print(nodes)
    shared = any(e.shared_kv for e in result.edges)
    edges = Table(
        title="measured paths (path patching)",
        caption="* keys/values shared with the other heads of the receiver's group" if shared else None,
    )
    for column in ("from", "to", "via", "share of difference", "metric change"):
        edges.add_column(column, justify="right" if column.startswith(("share", "metric")) else "left")
    for e in result.edges:
        if e.measured:
            via = ", ".join(e.via) + (" *" if e.shared_kv else "")
            edges.add_row(e.source, e.target, via, f"{e.effect:+.1%}", f"{e.metric_change:+.4f}")
    out.print(edges)
    unmeasured = sum(not e.measured for e in result.edges)
    out.print(f"{unmeasured} further layer-ordered paths between kept components were not measured.")


declare_command(OPERATIONS["circuit"], show_circuit)
