"""``glasslab transcoders train|estimate|eval|list|feature|precompute``: build a transcoder set for attribution
graphs, say how long that takes here, measure a set, list the sets in the store, show a feature's dashboard,
label every feature of a set. Declared in ``glasslab.operations.transcoders`` and ``.transcoder_features``:
here only how their results read."""

from __future__ import annotations

import shlex
import sys
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from ..dictionaries.transcoder_estimate import TranscoderTrainingEstimate
from ..methods.features.transcoder_features import TranscodersPrecomputed
from ..methods.features.transcoder_training import TrainedTranscoders, TranscoderSets
from ..methods.features.transcoders import TranscoderEvaluation
from ..operations import OPERATIONS
from .app import app, err, out
from .derived import declare_command
from .sae import show_dashboard

transcoders_app = typer.Typer(
    no_args_is_help=True, help="Transcoder sets (one per layer, replacing the MLPs) for attribution graphs."
)
app.add_typer(transcoders_app, name="transcoders")


def estimate_line(result: TranscoderTrainingEstimate) -> str:
    return (
        f"building {result.layers} layers' transcoders would take about {result.seconds / 60:.1f} min here: "
        f"{result.harvest_s:.0f} s reading the model ({result.harvest_sequences:,} sequences), "
        f"{result.train_s:.0f} s for {result.steps:,} steps (evaluation not counted)"
    )


def show_estimate(result: TranscoderTrainingEstimate) -> None:
    out.print(escape(estimate_line(result)), highlight=False)


def show_training(result: TrainedTranscoders) -> None:
    facts = result.training
    out.print(
        f"trained {escape(facts['name'])}: {len(facts['layers'])} layers x {facts['d_sae']} features, "
        f"{facts['tokens_trained']:,} tokens ({facts['tokens_harvested']:,} read from the model) in "
        f"{facts['seconds']:.0f} s",
        highlight=False,
    )
    out.print(f"saved to {escape(str(result.path))}", highlight=False)
    if result.evaluation:
        show_evaluation(TranscoderEvaluation.from_dict(result.evaluation))


def show_evaluation(result: TranscoderEvaluation) -> None:
    table = Table(title=escape(f"transcoders of {result.model}"))
    for column in ("layer", "FVE", "L0", "dead"):
        table.add_column(column, justify="right")
    for fit in result.layers:
        table.add_row(str(fit.layer), f"{fit.fve:.4f}", f"{fit.l0:.1f}", f"{fit.dead_fraction:.1%}")
    table.caption = escape(f"{result.tokens:,} held-out tokens of {result.corpus}")
    out.print(table)
    out.print(
        f"every MLP replaced: loss {result.loss_replaced:.4f} (clean {result.loss_clean:.4f}, mean-ablated "
        f"{result.loss_mean:.4f}, zero-ablated {result.loss_zero:.4f}); loss recovered "
        f"{result.loss_recovered_mean:.4f} vs mean, {result.loss_recovered_zero:.4f} vs zero "
        f"({result.loss_tokens:,} tokens)",
        highlight=False,
    )


def show_sets(result: TranscoderSets) -> None:
    if not result.sets:
        out.print(
            f"no transcoder set for {escape(result.model)} in the store: build one with `glasslab transcoders train`"
        )
        return
    table = Table(title=escape(f"transcoder sets for {result.model}"))
    for column in ("name", "architecture", "layers", "features"):
        table.add_column(column)
    for found in result.sets:
        summary = found.get("summary") or {}
        row = (found["name"], summary.get("architecture", "?"), summary.get("layers", "?"), summary.get("d_sae", "?"))
        table.add_row(*(escape(str(value)) for value in row))
    out.print(table)


def show_precomputed(result: TranscodersPrecomputed) -> None:
    for layer, counts in result.layers.items():
        out.print(
            f"layer {layer}: {counts['dashboards']} dashboards and {counts['labels']} labels "
            f"({counts['concepts']} naming a class)",
            highlight=False,
        )
    out.print(
        escape(f"from {result.tokens:,} tokens of {result.corpus} per layer, written into {result.folder}"),
        highlight=False,
    )


def _training_arguments() -> dict[str, Any]:
    """The command line that ran (recorded in training.json) and the estimate printed before training."""
    return {
        "command": shlex.join(["glasslab", *sys.argv[1:]]),
        "announce": lambda estimate: err.print(escape(estimate_line(estimate)), highlight=False),
    }


declare_command(
    OPERATIONS["transcoders-train"],
    show_training,
    on=transcoders_app,
    cli_name="train",
    passes=_training_arguments,
    more_help="Example: glasslab transcoders train --name mine, then glasslab graph 'The capital of France is' -t mine",
)
declare_command(OPERATIONS["transcoders-estimate"], show_estimate, on=transcoders_app, cli_name="estimate")
declare_command(OPERATIONS["transcoders-eval"], show_evaluation, on=transcoders_app, cli_name="eval")
declare_command(OPERATIONS["transcoders-list"], show_sets, on=transcoders_app, cli_name="list")
declare_command(
    OPERATIONS["transcoders-dashboard"],
    show_dashboard,
    on=transcoders_app,
    cli_name="feature",
    more_help="Example: glasslab transcoders feature mine 3 120 (layer 3, feature 120 of the set 'mine')",
)
declare_command(OPERATIONS["transcoders-precompute"], show_precomputed, on=transcoders_app, cli_name="precompute")
