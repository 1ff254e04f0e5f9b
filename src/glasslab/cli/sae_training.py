"""``glasslab sae train``, ``glasslab sae estimate`` and ``glasslab sae eval``: train an SAE on any hook, say
how long that would take here, measure any SAE. Declared in ``glasslab.operations`` (sae_training,
features): here only how their results read."""

from __future__ import annotations

import shlex
import sys

from rich.markup import escape
from rich.table import Table

from ..methods.features.estimate import TrainingEstimate
from ..methods.features.evaluate import SAEEvaluation
from ..methods.features.training import TrainedSAE
from ..operations import OPERATIONS
from .app import out
from .derived import declare_command
from .sae import sae_app


def show_training(result: TrainedSAE) -> None:
    facts = result.training
    out.print(
        f"trained {escape(facts['name'])}: {facts['d_sae']} features, {facts['tokens_trained']:,} tokens "
        f"({facts['tokens_harvested']:,} read from the model) in {facts['seconds']:.0f} s",
        highlight=False,
    )
    out.print(f"saved to {escape(str(result.path))}", highlight=False)
    if result.evaluation:
        _show_evaluation(SAEEvaluation.from_dict(result.evaluation))


def show_estimate(result: TrainingEstimate) -> None:
    out.print(
        f"training an SAE at {escape(result.hook)} would take about {result.seconds:.0f} s here: "
        f"{result.harvest_s:.0f} s reading activations ({result.harvest_sequences:,} sequences), "
        f"{result.train_s:.0f} s for {result.steps:,} steps, {result.evaluate_s:.0f} s evaluating",
        highlight=False,
    )


def _command_line() -> dict[str, str]:
    """The command that ran, recorded with the SAE it trains."""
    return {"command": shlex.join(["glasslab", *sys.argv[1:]])}


def _show_evaluation(result: SAEEvaluation) -> None:
    table = Table(title=escape(f"SAE at {result.hook} ({result.architecture}, {result.d_sae} features)"))
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("L0 (active features per token)", f"{result.l0:.1f}"),
        ("fraction of variance explained", f"{result.fve:.4f}"),
        ("loss recovered vs mean ablation", f"{result.loss_recovered_mean:.4f}"),
        ("loss recovered vs zero ablation", f"{result.loss_recovered_zero:.4f}"),
        ("loss: clean / spliced", f"{result.loss_clean:.4f} / {result.loss_spliced:.4f}"),
        ("loss: mean / zero ablation", f"{result.loss_mean:.4f} / {result.loss_zero:.4f}"),
        ("dead features (never active)", f"{result.dead_fraction:.2%}"),
        ("dense features (active > 10%)", f"{result.dense_fraction:.2%}"),
    ]
    for label, value in rows:
        table.add_row(label, value)
    table.caption = escape(
        f"{result.tokens:,} held-out tokens ({result.loss_tokens:,} for the losses), {result.corpus}"
    )
    out.print(table)


declare_command(OPERATIONS["sae-train"], show_training, on=sae_app, cli_name="train", passes=_command_line)
declare_command(OPERATIONS["sae-train-estimate"], show_estimate, on=sae_app, cli_name="estimate")
declare_command(OPERATIONS["sae-eval"], _show_evaluation, on=sae_app, cli_name="eval")
