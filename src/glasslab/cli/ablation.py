"""Commands that knock components out or clamp them: ablate, ablate-sweep, clamp-neurons."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

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

AblatePositionOpt = Annotated[
    list[int] | None, typer.Option("--ablate-position", help="Ablate only at this token position (repeatable).")
]
HowOpt = Annotated[str, typer.Option(help="zero, mean or resample.")]
ReferenceOpt = Annotated[
    list[str] | None,
    typer.Option("--reference", help="A reference prompt for mean or resample ablation (repeatable)."),
]
CorpusOpt = Annotated[
    str | None, typer.Option(help="Corpus for mean ablation: 'builtin', a .txt/.jsonl file or folder, or hf:NAME.")
]
SeedOpt = Annotated[int, typer.Option(help="Seed for resample ablation's draws.")]
SamplesOpt = Annotated[int, typer.Option(help="Resample draws to average over.")]


@app.command("ablate")
@friendly_errors
def ablate(
    prompt: Annotated[str, typer.Argument(help="The text to run.")],
    target: TargetOpt = None,
    versus: VersusOpt = None,
    metric: MetricOpt = None,
    position: MetricPositionOpt = -1,
    head: Annotated[list[str] | None, typer.Option("--head", help="A head as LAYER.HEAD (repeatable).")] = None,
    layer_attn: Annotated[
        list[int] | None, typer.Option("--layer-attn", help="A layer's whole attention block (repeatable).")
    ] = None,
    layer_mlp: Annotated[
        list[int] | None, typer.Option("--layer-mlp", help="A layer's MLP block (repeatable).")
    ] = None,
    neuron: Annotated[list[str] | None, typer.Option("--neuron", help="A neuron as LAYER.NEURON (repeatable).")] = None,
    ablate_position: AblatePositionOpt = None,
    how: HowOpt = "zero",
    reference: ReferenceOpt = None,
    corpus: CorpusOpt = None,
    seed: SeedOpt = 0,
    samples: SamplesOpt = 1,
    model: ModelOpt = None,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
    out_file: OutOpt = None,
) -> None:
    """Knock out heads, attention/MLP blocks or neurons together and compare a metric with the clean run."""
    from ..methods.ablation import ablate as run_ablate

    result = run_ablate(
        load_model(model, dtype, device),
        prompt,
        target=target,
        versus=versus,
        metric=metric,
        position=position,
        heads=[parse_layer_index(t, "head") for t in head or []],
        attn_layers=layer_attn or (),
        mlp_layers=layer_mlp or (),
        neurons=[parse_layer_index(t, "neuron") for t in neuron or []],
        ablate_positions=ablate_position,
        how=how,
        reference=reference,
        corpus=corpus,
        seed=seed,
        samples=samples,
    )

    def show() -> None:
        table = Table(
            title=escape(f"{result.how}-ablating {', '.join(result.components)}"), caption=escape(result.metric)
        )
        for column in ("clean", "ablated", "difference"):
            table.add_column(column, justify="right")
        table.add_row(f"{result.clean:.4f}", f"{result.ablated:.4f}", f"{result.difference:+.4f}")
        out.print(table)
        if result.reference:
            out.print(f"reference: {result.reference}", highlight=False, markup=False)

    emit(result, as_json, out_file, show)


@app.command("ablate-sweep")
@friendly_errors
def ablate_sweep(
    prompt: Annotated[str, typer.Argument(help="The text to run.")],
    target: TargetOpt = None,
    versus: VersusOpt = None,
    metric: MetricOpt = None,
    position: MetricPositionOpt = -1,
    over: Annotated[str, typer.Option(help="heads (every head) or layers (every attention and MLP block).")] = "heads",
    ablate_position: AblatePositionOpt = None,
    how: HowOpt = "zero",
    reference: ReferenceOpt = None,
    corpus: CorpusOpt = None,
    seed: SeedOpt = 0,
    samples: SamplesOpt = 1,
    batch_size: Annotated[int, typer.Option(help="Ablations per forward pass.")] = 64,
    top: Annotated[int, typer.Option(help="How many components to list by effect.")] = 10,
    model: ModelOpt = None,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
    out_file: OutOpt = None,
) -> None:
    """Ablate every head (or every layer's attention and MLP) in turn: the metric's change per component."""
    from ..methods.ablation import ablation_sweep

    result = ablation_sweep(
        load_model(model, dtype, device),
        prompt,
        target=target,
        versus=versus,
        metric=metric,
        position=position,
        over=over,
        ablate_positions=ablate_position,
        how=how,
        reference=reference,
        corpus=corpus,
        seed=seed,
        samples=samples,
        batch_size=batch_size,
    )

    def show() -> None:
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

    emit(result, as_json, out_file, show)


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
