"""The observation commands (predict, attention, head-roles, dla, neurons, generate), built from their
declarations in ``glasslab.operations.observe``: here only how each result reads in a terminal."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..methods.attribute.dla import LogitAttribution
from ..methods.observe.attention import Attention
from ..methods.observe.head_roles import ROLES, HeadRoles
from ..methods.observe.neurons import NeuronsAtPosition
from ..methods.observe.predict import Prediction
from ..model.generation import Generation
from ..operations import OPERATIONS
from .app import out
from .derived import declare_command

LossesOpt = Annotated[bool, typer.Option("--losses", help="Also print each token's loss (surprise).")]
TopRolesOpt = Annotated[int, typer.Option(help="How many heads to list per role.")]


def show_prediction(result: Prediction, *, losses: bool = False) -> None:
    table = Table(
        title=escape(f"next token after {result.context_token!r} (position {result.position})"),
        caption=f"entropy {result.entropy_nats:.3f} nats · mean loss of the text {result.mean_loss:.3f} nats",
    )
    for column in ("rank", "token", "probability", "logit"):
        table.add_column(column, justify="left" if column == "token" else "right")
    for s in result.top:
        table.add_row(str(s.rank), escape(repr(s.token)), f"{s.probability:.4f}", f"{s.logit:.3f}")
    out.print(table)
    if result.target:
        t = result.target
        out.print(
            f"target {t.token!r}: rank {t.rank}, probability {t.probability:.4g}, logit {t.logit:.3f}",
            highlight=False,
            markup=False,
        )
    if losses:
        loss_table = Table(title="loss of each token given the ones before it (nats)")
        for column in ("position", "token", "loss"):
            loss_table.add_column(column)
        for item in result.token_losses:
            loss_table.add_row(str(item.position), escape(repr(item.token)), f"{item.loss:.3f}")
        out.print(loss_table)


def show_attention(result: Attention) -> None:
    q = result.query_position
    table = Table(
        title=escape(f"what token {q} {result.tokens[q]!r} reads, per head"),
        caption="row max, entropy (nats), distance (tokens) and first-token weight are means over queries 1..n-1",
    )
    for column in (
        "layer",
        "head",
        "row max",
        "entropy",
        "distance",
        "first token",
        "reads (position token weight)",
    ):
        table.add_column(column, justify="left" if column.startswith("reads") else "right")
    for s in result.summaries:
        reads = ", ".join(f"{r.token!r}@{r.position} {r.weight:.2f}" for r in result.reads[s.layer][s.head])
        style = "bold" if (s.layer, s.head) == (result.layer, result.head) else None
        table.add_row(
            str(s.layer),
            str(s.head),
            f"{s.row_max:.3f}",
            f"{s.entropy:.3f}",
            f"{s.distance:.2f}",
            f"{s.first_token:.3f}",
            escape(reads),
            style=style,
        )
    out.print(table)
    out.print(
        f"selected head: layer {result.layer}, head {result.head} (its full pattern is in --json and --out)",
        highlight=False,
        markup=False,
    )


def show_head_roles(result: HeadRoles, *, top: int = 5) -> None:
    table = Table(
        title=escape(f"{result.model}: top heads per role"),
        caption=f"mean attention on the role's target over {result.n_seqs} x [BOS, {result.seq_len} random "
        f"tokens, the same again], seed {result.seed}",
    )
    table.add_column("role")
    table.add_column("head", justify="right")
    table.add_column("score (random)", justify="right")
    if result.prompt is not None:
        table.add_column("score (prompt)", justify="right")
    for role in ROLES:
        prompt_scores = result.prompt_scores.get(role)
        for i, (layer, head, score) in enumerate(result.top(role, top)):
            row = [role if i == 0 else "", f"L{layer}H{head}", f"{score:.3f}"]
            if result.prompt is not None:
                row.append("n/a" if prompt_scores is None else f"{float(prompt_scores[layer, head]):.3f}")
            table.add_row(*row, end_section=i == top - 1)
    out.print(table)
    for note in result.notes:
        out.print(f"note: {note}", highlight=False, markup=False)


def show_dla(result: LogitAttribution) -> None:
    cap = " before the final soft-cap" if result.softcapped else ""
    table = Table(
        title=escape(f"direct shares of {result.metric} after {result.context_token!r} (position {result.position})"),
        caption=escape(
            f"sum of shares {result.total:.4f} = decomposed value{cap} {result.normalised_logit:.4f} "
            f"(error {result.error:.2g}); model's value {result.logit:.4f}"
        ),
    )
    for column in ("component", "attention", "MLP", "cumulative", "top heads"):
        table.add_column(column, justify="left" if column in ("component", "top heads") else "right")
    table.add_row("embed", "", "", f"{result.embed:+.4f}", "")
    for layer, (a, m, c, heads) in enumerate(
        zip(result.attn, result.mlp, result.cumulative, result.heads, strict=True)
    ):
        best = sorted(range(len(heads)), key=lambda h: -abs(heads[h]))[:3]
        table.add_row(
            f"L{layer}", f"{a:+.4f}", f"{m:+.4f}", f"{c:+.4f}", ", ".join(f"H{h} {heads[h]:+.3f}" for h in best)
        )
    for name, value in result.constants.items():
        table.add_row(escape(name), "", "", f"{value:+.4f}", "")
    out.print(table)
    if result.top_neurons:
        neurons_table = Table(title="neurons with the largest direct shares")
        for column in ("neuron", "activation", "per unit", "share"):
            neurons_table.add_column(column, justify="right")
        for n in result.top_neurons:
            neurons_table.add_row(
                f"L{n.layer} N{n.neuron}", f"{n.activation:.4f}", f"{n.per_unit:+.4f}", f"{n.contribution:+.4f}"
            )
        out.print(neurons_table)


def show_neurons(result: NeuronsAtPosition) -> None:
    where = f"layer {result.layer}" if result.layer is not None else "all layers"
    for title, rows in (
        (f"most active neurons after {result.context_token!r} ({where})", result.most_active),
        (f"largest direct shares of {result.metric}", result.most_relevant),
    ):
        if not rows:
            continue
        table = Table(title=escape(title))
        for column in ("neuron", "activation", "share"):
            table.add_column(column, justify="right")
        for s in rows:
            share = "" if s.contribution is None else f"{s.contribution:+.4f}"
            table.add_row(f"L{s.layer} N{s.neuron}", f"{s.activation:.4f}", share)
        out.print(table)


def show_generation(result: Generation) -> None:
    out.print(f"[bold]{escape(result.prompt)}[/]{escape(result.completion)}", highlight=False)


declare_command(OPERATIONS["predict"], show_prediction, display={"losses": (LossesOpt, False)})
declare_command(OPERATIONS["attention"], show_attention)
declare_command(OPERATIONS["head-roles"], show_head_roles, display={"top": (TopRolesOpt, 5)})
declare_command(OPERATIONS["dla"], show_dla)
declare_command(OPERATIONS["neurons"], show_neurons)
declare_command(OPERATIONS["generate"], show_generation)
