"""The ``patch`` command: activation patching (or its gradient estimate) between a clean and a corrupted prompt,
declared in ``glasslab.operations.patching``; here only how its result reads."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from ..methods.patch.attribution_patching import AttributionPatching
from ..methods.patch.patching import ActivationPatching
from ..operations import OPERATIONS
from .app import out
from .derived import declare_command


def show_patching(result: ActivationPatching | AttributionPatching) -> None:
    attribution = isinstance(result, AttributionPatching)
    how = "attribution patching (gradient estimate)" if attribution else "activation patching"
    correlation = getattr(result, "correlation", None)
    table = Table(
        title=escape(f"{how} of {result.where()}, {result.mode}: normalised {result.metric}"),
        caption=escape(
            f"clean {result.clean_value:.4f}, corrupted {result.corrupted_value:.4f}; "
            "0 = corrupted, 1 = clean"
            + (f"; correlation with real patching {correlation:.3f}" if correlation is not None else "")
        ),
    )
    table.add_column("layer", justify="right")
    for label in result.column_labels():
        table.add_column(escape(label), justify="right")
    for layer, row in zip(result.layers, result.normalised, strict=True):
        table.add_row(f"L{layer}", *(f"{v:+.2f}" for v in row))
    out.print(table)


declare_command(OPERATIONS["patch"], show_patching)
