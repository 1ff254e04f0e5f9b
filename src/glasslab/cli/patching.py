"""The ``patch`` command: activation patching (or its gradient estimate) between a clean and a corrupted prompt."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import InputError
from .app import (
    DeviceOpt,
    DtypeOpt,
    JsonOpt,
    MetricOpt,
    ModelOpt,
    OutOpt,
    VersusOpt,
    app,
    emit,
    friendly_errors,
    load_model,
    out,
)


def _position(text: str | None) -> int | str | None:
    if text is None or text in ("each", "all"):
        return text
    try:
        return int(text)
    except ValueError:
        raise InputError(f"--position must be a token position (e.g. -1), 'each' or 'all'; got '{text}'") from None


@app.command("patch")
@friendly_errors
def patch(
    clean: Annotated[str, typer.Argument(help="The prompt where the model does the task.")],
    corrupted: Annotated[str, typer.Argument(help="The same prompt with one detail changed.")],
    target: Annotated[str, typer.Option(help="The clean answer token (e.g. ' Mary').")],
    versus: VersusOpt = None,
    metric: MetricOpt = None,
    site: Annotated[
        str,
        typer.Option(
            help="resid_pre, resid_mid, resid_post, attn_out, mlp_out (layer x position) or attn.head_out, "
            "attn.z, attn.q, attn.k, attn.v, attn.pattern (layer x head)."
        ),
    ] = "resid_pre",
    noising: Annotated[bool, typer.Option(help="Patch corrupted values into the clean run instead.")] = False,
    position: Annotated[
        str | None,
        typer.Option(help="One position (e.g. -1), 'all' at once, or 'each' (default for layer x position sites)."),
    ] = None,
    align: Annotated[str | None, typer.Option(help="Prompts of different lengths: 'right' or 'left'.")] = None,
    attribution: Annotated[bool, typer.Option(help="Gradient estimate (attribution patching), much faster.")] = False,
    compare: Annotated[bool, typer.Option(help="With --attribution, also run real patching and correlate.")] = False,
    batch_size: Annotated[int | None, typer.Option(help="Patched runs per forward pass (default: auto).")] = None,
    model: ModelOpt = None,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
    out_file: OutOpt = None,
) -> None:
    """Activation patching: which layers, positions or heads carry the difference between two prompts."""
    from ..methods.attribution_patching import attribution_patching
    from ..methods.patching import activation_patching

    options = dict(
        target=target,
        versus=versus,
        metric=metric,
        site=site,
        position=_position(position),
        noising=noising,
        align=align,
        batch_size=batch_size,
    )
    loaded = load_model(model, dtype, device)
    if attribution:
        result = attribution_patching(loaded, clean, corrupted, compare=compare, **options)
    else:
        result = activation_patching(loaded, clean, corrupted, **options)

    def show() -> None:
        how = "attribution patching (gradient estimate)" if attribution else "activation patching"
        table = Table(
            title=escape(f"{how} of {result.where()}, {result.mode}: normalised {result.metric}"),
            caption=escape(
                f"clean {result.clean_value:.4f}, corrupted {result.corrupted_value:.4f}; "
                "0 = corrupted, 1 = clean"
                + (f"; correlation with real patching {result.correlation:.3f}" if compare and attribution else "")
            ),
        )
        table.add_column("layer", justify="right")
        for label in result.column_labels():
            table.add_column(escape(label), justify="right")
        for layer, row in zip(result.layers, result.normalised, strict=True):
            table.add_row(f"L{layer}", *(f"{v:+.2f}" for v in row))
        out.print(table)

    emit(result, as_json, out_file, show)
