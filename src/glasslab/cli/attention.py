"""Commands for attention: ``attention`` (patterns, summaries, what a token reads) and ``head-roles``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from .app import DeviceOpt, DtypeOpt, JsonOpt, ModelOpt, OutOpt, app, emit, friendly_errors, load_model, out


@app.command("attention")
@friendly_errors
def attention(
    prompt: Annotated[str, typer.Argument(help="The text whose attention patterns to show.")],
    layer: Annotated[
        int | None, typer.Option(help="Layer of the head to show in full (default: a focused head).")
    ] = None,
    head: Annotated[int | None, typer.Option(help="Head to show in full (needs --layer).")] = None,
    query_position: Annotated[
        int, typer.Option("--query-position", help="The token whose reads to list (-1: the last).")
    ] = -1,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="How many key tokens to list per head.")] = 3,
    model: ModelOpt = None,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
    out_file: OutOpt = None,
) -> None:
    """Show where every attention head looks: per-head summaries and which earlier tokens a token reads."""
    from ..methods.attention import attention as run_attention

    result = run_attention(
        load_model(model, dtype, device), prompt, layer=layer, head=head, query_position=query_position, top_k=top_k
    )

    def show() -> None:
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

    emit(result, as_json, out_file, show)


@app.command("head-roles")
@friendly_errors
def head_roles(
    prompt: Annotated[str | None, typer.Argument(help="Also score the heads on this text (optional).")] = None,
    seq_len: Annotated[int, typer.Option("--seq-len", help="Length of each random half of a sequence.")] = 50,
    n_seqs: Annotated[int, typer.Option("--n-seqs", help="How many random sequences to average over.")] = 16,
    seed: Annotated[int, typer.Option(help="Random seed for the generated sequences.")] = 0,
    top: Annotated[int, typer.Option(help="How many heads to list per role.")] = 5,
    model: ModelOpt = None,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
    out_file: OutOpt = None,
) -> None:
    """Score every head as previous-token, induction, duplicate-token and attention-sink head."""
    from ..methods.head_roles import ROLES
    from ..methods.head_roles import head_roles as run_head_roles

    result = run_head_roles(load_model(model, dtype, device), prompt, seq_len=seq_len, n_seqs=n_seqs, seed=seed)

    def show() -> None:
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

    emit(result, as_json, out_file, show)
