"""Commands of steering: steering-vector (build and save a vector) and steer (baseline vs steered, at one scale
or a sweep), declared in ``glasslab.operations.steering``: here only how their results read. ``steer-make``
and ``steer-sweep`` are their former names, kept as deprecated aliases."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..methods.intervene.steering import Steering, SteeringVector
from ..operations import OPERATIONS
from .app import DeviceOpt, DtypeOpt, JsonOpt, ModelOpt, OutOpt, app, friendly_errors, out, parse_numbers
from .derived import declare_command, run_declared


def show_vector(vector: SteeringVector) -> None:
    facts = vector.to_dict()
    caption = f"norm {vector.norm:.3f}" + (
        f" · explained variance {vector.explained:.1%}" if vector.explained is not None else ""
    )
    table = Table(title=escape(f"{vector.method} vector at {vector.hook}"), caption=escape(caption))
    for column in ("positive", "negative", "projection", "cosine"):
        table.add_column(column, justify="right" if column in ("projection", "cosine") else "left")
    for (p, n), proj, cos in zip(vector.pairs, vector.pair_projections, vector.pair_cosines, strict=True):
        table.add_row(escape(repr(p)), escape(repr(n)), f"{proj:.3f}", f"{cos:.3f}")
    out.print(table)
    if facts["path"]:
        out.print(f"saved to {escape(facts['path'])}", highlight=False)


def show_steering(result: Steering) -> None:
    contrast = result.positive_token is not None
    table = Table(
        title=escape(f"steering {result.prompt!r} at {result.hook} ({result.method}, norm {result.vector_norm:.3g})"),
        caption="projection: mean of the text's activations along the vector in a clean re-run (no steering)",
    )
    table.add_column("scale", justify="right")
    table.add_column("projection", justify="right")
    if contrast:
        table.add_column(escape(f"log p({result.positive_token!r}) - log p({result.negative_token!r})"))
    table.add_column("continuation")
    for row in result.rows:
        cells = [row.label, "-" if row.projection is None else f"{row.projection:.3f}"]
        if contrast:
            cells.append(f"{row.logprob_positive - row.logprob_negative:+.3f}")
        table.add_row(*cells, escape(row.completion.replace("\n", "\\n")))  # one line per text
    out.print(table)


declare_command(OPERATIONS["steering-vector"], show_vector, renamed_from="steer-make")
declare_command(OPERATIONS["steer"], show_steering)


@app.command("steer-sweep", hidden=True, deprecated=True)
@friendly_errors
def steer_sweep(
    prompt: Annotated[str, typer.Argument(help="The text to continue.")],
    vector: Annotated[str, typer.Option("--vector", "-v", help="A vector's name in the store or its folder.")],
    scales: Annotated[str, typer.Option(help="Comma-separated scales, e.g. 0,2,4,8.")] = "0,2,4,8",
    max_new_tokens: Annotated[int, typer.Option(help="How many tokens to generate for each text.")] = 30,
    position: Annotated[list[int] | None, typer.Option("--position", "-p", help="Add only here.")] = None,
    positive_token: Annotated[str | None, typer.Option(help="Score this token.")] = None,
    negative_token: Annotated[str | None, typer.Option(help="...against this one.")] = None,
    temperature: Annotated[float, typer.Option(help="0 for greedy decoding.")] = 0.0,
    seed: Annotated[int | None, typer.Option(help="Random seed for sampling.")] = None,
    model: ModelOpt = None,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
    out_file: OutOpt = None,
) -> None:
    """Renamed: use `glasslab steer --scale 0 --scale 2 ...` (one --scale per scale)."""
    values = dict(
        prompt=prompt,
        vector=vector,
        scales=parse_numbers(scales, "scales", "0,2,4,8"),
        max_new_tokens=max_new_tokens,
        positions=position,
        positive_token=positive_token,
        negative_token=negative_token,
        temperature=temperature,
        seed=seed,
    )
    run_declared(OPERATIONS["steer"], values, show_steering, model, dtype, device, as_json, out_file)
