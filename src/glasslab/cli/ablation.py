"""Commands that knock components out or clamp them: ablate, ablation-sweep and clamp-neurons (declared in
``glasslab.operations.intervene``: here only how their results read)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..methods.intervene.ablation import Ablation, AblationSweep
from ..methods.intervene.neuron_clamp import NeuronClamp
from ..operations import OPERATIONS
from .app import (
    out,
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


def show_clamp(result: NeuronClamp) -> None:
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


declare_command(OPERATIONS["clamp-neurons"], show_clamp)
