"""Commands of steering: steer-make (build and save a vector), steer (baseline vs steered), steer-sweep (scales)."""

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
    ModelOpt,
    OutOpt,
    app,
    emit,
    friendly_errors,
    load_model,
    out,
    parse_numbers,
)

VectorOpt = Annotated[
    str, typer.Option("--vector", "-v", help="A vector's name in the store (from steer-make --save) or its folder.")
]
TokensOpt = Annotated[int, typer.Option(help="How many tokens to generate for each text.")]
PositionOpt = Annotated[
    list[int] | None,
    typer.Option(
        "--position", "-p", help="Add only at these token positions (repeatable; -1: the prompt's last). Default: all."
    ),
]
PositiveTokenOpt = Annotated[
    str | None, typer.Option(help="Also score this token at the first new position (e.g. ' love').")
]
NegativeTokenOpt = Annotated[str | None, typer.Option(help="...against this one (e.g. ' hate').")]
TemperatureOpt = Annotated[float, typer.Option(help="0 for greedy decoding; higher samples (same seed every row).")]
SeedOpt = Annotated[int | None, typer.Option(help="Random seed for sampling.")]


@app.command("steer-make")
@friendly_errors
def steer_make(
    positive: Annotated[
        list[str], typer.Option("--positive", help="A positive prompt (repeatable; pairs with --negative in order).")
    ],
    negative: Annotated[list[str], typer.Option("--negative", help="Its negative counterpart (repeatable).")],
    layer: Annotated[int | None, typer.Option(help="Read blocks.LAYER.resid_pre (the stream entering LAYER).")] = None,
    hook: Annotated[str | None, typer.Option(help="Or any residual hook, e.g. blocks.6.resid_post.")] = None,
    method: Annotated[str, typer.Option(help="caa (mean difference), actadd (one pair) or pca.")] = "caa",
    position: Annotated[str, typer.Option(help="last (each prompt's last token) or mean (over its tokens).")] = "last",
    save: Annotated[
        str | None, typer.Option(help="Save under this name in the store (or into this folder, if a path).")
    ] = None,
    model: ModelOpt = None,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
    out_file: OutOpt = None,
) -> None:
    """Build a steering vector from contrastive prompt pairs (positive minus negative activations)."""
    from ..methods.steering import make_steering_vector

    if len(positive) != len(negative):
        raise InputError(f"got {len(positive)} --positive but {len(negative)} --negative; give them in pairs")
    vector = make_steering_vector(
        load_model(model, dtype, device),
        list(zip(positive, negative, strict=True)),
        layer=layer,
        hook=hook,
        method=method,
        position=position,
    )
    if save:
        vector = vector.save(save)

    def show() -> None:
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

    emit(vector, as_json, out_file, show)


def _run(
    prompt: str,
    vector: str,
    scales: list[float],
    *,
    max_new_tokens: int,
    position: list[int] | None,
    positive_token: str | None,
    negative_token: str | None,
    temperature: float,
    seed: int | None,
    model: str | None,
    dtype: str,
    device: str,
    as_json: bool,
    out_file: str | None,
) -> None:
    from ..methods.steering import load_steering_vector, steer

    loaded = load_model(model, dtype, device)
    result = steer(
        loaded,
        prompt,
        load_steering_vector(loaded, vector),
        scales=scales,
        max_new_tokens=max_new_tokens,
        positions=position or None,
        positive_token=positive_token,
        negative_token=negative_token,
        temperature=temperature,
        seed=seed,
    )

    def show() -> None:
        contrast = result.positive_token is not None
        table = Table(
            title=escape(
                f"steering {result.prompt!r} at {result.hook} ({result.method}, norm {result.vector_norm:.3g})"
            ),
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

    emit(result, as_json, out_file, show)


@app.command("steer")
@friendly_errors
def steer_command(
    prompt: Annotated[str, typer.Argument(help="The text to continue.")],
    vector: VectorOpt,
    scale: Annotated[float, typer.Option(help="How many times the vector to add.")] = 4.0,
    max_new_tokens: TokensOpt = 30,
    position: PositionOpt = None,
    positive_token: PositiveTokenOpt = None,
    negative_token: NegativeTokenOpt = None,
    temperature: TemperatureOpt = 0.0,
    seed: SeedOpt = None,
    model: ModelOpt = None,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
    out_file: OutOpt = None,
) -> None:
    """Continue a prompt with and without a steering vector added, side by side."""
    _run(
        prompt,
        vector,
        [scale],
        max_new_tokens=max_new_tokens,
        position=position,
        positive_token=positive_token,
        negative_token=negative_token,
        temperature=temperature,
        seed=seed,
        model=model,
        dtype=dtype,
        device=device,
        as_json=as_json,
        out_file=out_file,
    )


@app.command("steer-sweep")
@friendly_errors
def steer_sweep(
    prompt: Annotated[str, typer.Argument(help="The text to continue.")],
    vector: VectorOpt,
    scales: Annotated[
        str, typer.Option(help="Comma-separated scales, e.g. 0,2,4,8 (negatives steer away).")
    ] = "0,2,4,8",
    max_new_tokens: TokensOpt = 30,
    position: PositionOpt = None,
    positive_token: PositiveTokenOpt = None,
    negative_token: NegativeTokenOpt = None,
    temperature: TemperatureOpt = 0.0,
    seed: SeedOpt = None,
    model: ModelOpt = None,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
    out_file: OutOpt = None,
) -> None:
    """Continue a prompt at several steering scales and measure how far each text moved along the vector."""
    values = parse_numbers(scales, "scales", "0,2,4,8")
    _run(
        prompt,
        vector,
        values,
        max_new_tokens=max_new_tokens,
        position=position,
        positive_token=positive_token,
        negative_token=negative_token,
        temperature=temperature,
        seed=seed,
        model=model,
        dtype=dtype,
        device=device,
        as_json=as_json,
        out_file=out_file,
    )
