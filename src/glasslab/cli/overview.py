"""``glasslab overview``: the first screen of an analysis in one command (declared in
``glasslab.operations.observe``: here how it reads)."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from ..methods.observe.overview import Overview
from ..operations import OPERATIONS
from .app import out
from .derived import declare_command


def show_overview(result: Overview) -> None:
    prediction, attribution = result.prediction, result.attribution
    table = Table(title=escape(f"next token after {prediction.context_token!r}"))
    for column in ("rank", "token", "probability"):
        table.add_column(column)
    for s in prediction.top:
        table.add_row(str(s.rank), escape(repr(s.token)), f"{s.probability:.4f}")
    out.print(table)
    layers = Table(title=escape(f"layer by layer, toward {attribution.target!r}"))
    for column in ("layer", "logit lens top token", "attention share", "MLP share"):
        layers.add_column(column)
    lens_rows = result.logit_lens.to_dict()["layers"]
    for layer in range(len(attribution.attn)):
        lens_top = lens_rows[layer + 1]["positions"][0]["top"][0]["token"]
        layers.add_row(
            str(layer), escape(repr(lens_top)), f"{attribution.attn[layer]:+.3f}", f"{attribution.mlp[layer]:+.3f}"
        )
    out.print(layers)
    out.print("attention: every pattern is in --json and --out (.html/.png/.svg)", highlight=False)


declare_command(OPERATIONS["overview"], show_overview)
