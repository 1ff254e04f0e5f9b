"""``glasslab overview``: the first screen of an analysis in one command."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from .app import DeviceOpt, DtypeOpt, JsonOpt, ModelOpt, OutOpt, app, emit, friendly_errors, load_model, out


@app.command()
@friendly_errors
def overview(
    prompt: Annotated[str, typer.Argument(help="The text to analyse.")],
    k: Annotated[int, typer.Option("-k", "--top-k", help="How many next tokens to show.")] = 10,
    position: Annotated[int, typer.Option(help="The position to analyse (-1: the last token).")] = -1,
    model: ModelOpt = None,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
    out_file: OutOpt = None,
) -> None:
    """Predictions, the logit lens, direct logit attribution and attention from one forward pass."""
    from ..methods.overview import overview as run_overview

    result = run_overview(load_model(model, dtype, device), prompt, k=k, position=position)

    def show() -> None:
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

    emit(result, as_json, out_file, show)
