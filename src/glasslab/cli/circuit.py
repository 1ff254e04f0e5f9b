"""Commands that trace circuits: path-patch, and circuit (declared in ``glasslab.operations.patching``:
here only how its result reads)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import InputError
from ..methods.circuit import Circuit
from ..operations import OPERATIONS
from .app import (
    DeviceOpt,
    DtypeOpt,
    JsonOpt,
    MetricOpt,
    MetricPositionOpt,
    ModelOpt,
    OutOpt,
    TargetOpt,
    VersusOpt,
    app,
    emit,
    friendly_errors,
    load_model,
    out,
    parse_layer_index,
)
from .derived import declare_command

CleanArg = Annotated[str, typer.Argument(help="The clean prompt.")]
CorruptedArg = Annotated[str, typer.Argument(help="The corrupted prompt (same number of tokens).")]


def _heads(text: str) -> list[tuple[int, int]]:
    heads = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        heads.append(parse_layer_index(part, "senders", "HEAD"))
    if not heads:
        raise InputError("--senders is empty; write heads as LAYER.HEAD, e.g. 9.1,10.0")
    return heads


@app.command("path-patch")
@friendly_errors
def path_patch(
    clean: CleanArg,
    corrupted: CorruptedArg,
    target: TargetOpt = None,
    versus: VersusOpt = None,
    senders: Annotated[
        str | None, typer.Option(help="Sender heads LAYER.HEAD,... (default: every head, each alone).")
    ] = None,
    receivers: Annotated[str, typer.Option(help="logits, or head inputs LAYER.HEAD.q|k|v,...")] = "logits",
    together: Annotated[bool, typer.Option(help="Patch all senders together (one row) instead of each alone.")] = False,
    metric: MetricOpt = "logit_diff",
    position: MetricPositionOpt = -1,
    denoising: Annotated[
        bool, typer.Option(help="Run the corrupted prompt and take senders from the clean one.")
    ] = False,
    freeze_mlps: Annotated[bool, typer.Option(help="Freeze MLPs too (only head paths remain).")] = False,
    top: Annotated[int, typer.Option(help="Rows to show in the table.")] = 20,
    model: ModelOpt = None,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
    out_file: OutOpt = None,
) -> None:
    """Path patching: each sender head's effect on the metric through the receivers only."""
    from ..methods.path_patching import path_patching

    heads = _heads(senders) if senders is not None else None
    if together and heads is not None:
        heads = [heads]
    result = path_patching(
        load_model(model, dtype, device),
        clean,
        corrupted,
        senders=heads,
        receivers=[r.strip() for r in receivers.split(",") if r.strip()],
        metric=metric,
        target=target,
        versus=versus,
        position=position,
        direction="denoising" if denoising else "noising",
        freeze_mlps=freeze_mlps,
    )

    def show() -> None:
        table = Table(
            title=escape(f"path patching ({result.direction}) of {result.metric} into {', '.join(result.receivers)}"),
            caption=escape(f"clean {result.clean_value:.4f}, corrupted {result.corrupted_value:.4f}"),
        )
        for column in ("senders", "metric", "change", "share of difference"):
            table.add_column(column, justify="left" if column == "senders" else "right")
        for r in sorted(result.rows, key=lambda r: -abs(r.effect))[:top]:
            table.add_row(r.label, f"{r.value:.4f}", f"{r.effect:+.4f}", f"{r.fraction:+.1%}")
        out.print(table)

    emit(result, as_json, out_file, show)


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
