"""Commands that knock components out or clamp them: ablate and ablation-sweep (declared operations: here
only how their results read), and clamp-neurons."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..methods.ablation import Ablation, AblationSweep
from ..operations import OPERATIONS
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
    parse_layer_index,
)
from .derived import declare_command

TopOpt = Annotated[int, typer.Option(help="How many components to list by effect.")]


def show_ablation(result: Ablation) -> None:
    table = Table(title=escape(f"{result.how}-ablating {', '.join(result.components)}"), caption=escape(result.metric))
    for column in ("clean", "ablated", "difference"):
        table.add_column(column, justify="right")
    table.add_row(f"{result.clean:.4f}", f"{result.ablated:.4f}", f"{result.difference:+.4f}")
    out.print(table)
    if result.reference:
        out.print(f"reference: {result.reference}", highlight=False, markup=False)


def show_sweep(result: AblationSweep, *, top: int = 10) -> None:
    grid = Table(
        title=escape(f"change in {result.metric} when {result.how}-ablated (clean {result.clean:.4f})"),
        caption=f"{result.forward_passes} forward passes",
    )
    grid.add_column("layer")
    for column in result.columns:
        grid.add_column(column, justify="right")
    for layer, row in enumerate(result.effect):
        grid.add_row(f"L{layer}", *(f"{v:+.3f}" for v in row))
    out.print(grid)
    ranked = Table(title="largest drops first")
    for column in ("component", "change"):
        ranked.add_column(column, justify="right")
    for name, value in result.ranked(top):
        ranked.add_row(name, f"{value:+.4f}")
    out.print(ranked)


declare_command(OPERATIONS["ablate"], show_ablation)
declare_command(OPERATIONS["ablation-sweep"], show_sweep, display={"top": (TopOpt, 10)}, renamed_from="ablate-sweep")


@app.command("clamp-neurons")
@friendly_errors
def clamp_neurons(
    prompt: Annotated[str, typer.Argument(help="The text to continue.")],
    neuron: Annotated[list[str], typer.Option("--neuron", help="A neuron as LAYER.NEURON (repeatable).")],
    value: Annotated[float | None, typer.Option(help="Set the neurons to this value.")] = None,
    scale: Annotated[float | None, typer.Option(help="Multiply the neurons by this factor.")] = None,
    zero: Annotated[bool, typer.Option("--zero", help="Set the neurons to 0.")] = False,
    position: Annotated[
        list[int] | None,
        typer.Option("--position", help="Clamp only at this position (repeatable; -1: the prompt's last token)."),
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(help="How many tokens to generate.")] = 20,
    temperature: Annotated[float, typer.Option(help="0 for greedy decoding.")] = 0.0,
    seed: Annotated[int | None, typer.Option(help="Seed for sampling (both generations).")] = None,
    model: ModelOpt = None,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
    out_file: OutOpt = None,
) -> None:
    """Generate with and without MLP neurons set to a value, scaled or zeroed, side by side."""
    from ..methods.neuron_clamp import clamp_neurons as run_clamp

    result = run_clamp(
        load_model(model, dtype, device),
        prompt,
        [parse_layer_index(t, "neuron") for t in neuron or []],
        value=value,
        scale=scale,
        zero=zero,
        positions=position,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seed=seed,
    )

    def show() -> None:
        table = Table(title=escape(result.describe()))
        table.add_column("generation")
        table.add_column("continuation")
        table.add_row("baseline", escape(repr(result.baseline)))
        table.add_row("clamped", escape(repr(result.clamped)))
        out.print(table)
        if result.first_difference is not None:
            out.print(f"the texts part at new token {result.first_difference}", highlight=False, markup=False)
        values = Table(title="neuron values at the prompt's last token (baseline -> clamped)")
        values.add_column("neuron")
        values.add_column("values", justify="right")
        last = result.prompt_tokens - 1
        for name, base, clamped in zip(result.neurons, result.baseline_values, result.clamped_values, strict=True):
            values.add_row(name, f"{base[last]:.4f} -> {clamped[last]:.4f}")
        out.print(values)

    emit(result, as_json, out_file, show)
