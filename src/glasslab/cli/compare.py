"""``glasslab compare ...``: two prompts, two models, side effects of an intervention, head composition,
feature influence. All but ``compare models`` (which loads two models of its own) are declared in
``glasslab.operations.compare``: here only how their results read."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import InputError
from ..methods.compare.composition import MODE_NAMES, Composition
from ..methods.compare.feature_influence import FeatureInfluence
from ..methods.compare.prompts import PromptComparison
from ..methods.compare.side_effects import SideEffects
from ..operations import OPERATIONS
from .app import DeviceOpt, DtypeOpt, JsonOpt, OutOpt, app, emit, friendly_errors, load_model, out
from .derived import declare_command

compare_app = typer.Typer(
    no_args_is_help=True, help="Compare two prompts, two models, a model with and without an intervention, heads."
)
app.add_typer(compare_app, name="compare")

TopOpt = Annotated[int, typer.Option(help="How many of the largest changes to list.")]


def _changes_table(title: str, changes, caption: str = "") -> Table:
    table = Table(title=escape(title), caption=escape(caption) if caption else None)
    for column in ("what", "A", "B", "B - A / distance"):
        table.add_column(column, justify="left" if column == "what" else "right")
    for c in changes:
        cells = ["-" if v is None else f"{v:.4g}" for v in (c.a, c.b)]
        table.add_row(escape(c.label), *cells, f"{c.diff:+.4g}")
    return table


def show_prompts(result: PromptComparison) -> None:
    facts = " · ".join(f"{k}: {v}" for k, v in result.facts.items())
    caption = f"alignment {result.alignment.rule}, {len(result.alignment.pairs)} position pairs" + (
        f" · {facts}" if facts else ""
    )
    out.print(_changes_table(f"{result.method}: largest changes from A to B", result.changes, caption))


@compare_app.command("models")
@friendly_errors
def models(
    model_a: Annotated[str, typer.Argument(help="Model A: hub id, folder or .gguf ('default' for the offline one).")],
    model_b: Annotated[str, typer.Argument(help="Model B, compared with A.")],
    corpus: Annotated[str | None, typer.Option(help="builtin, a .txt/.jsonl file or folder, or hf:NAME.")] = None,
    prompt: Annotated[
        list[str] | None, typer.Option("--prompt", "-p", help="Compare on these prompts instead (repeatable).")
    ] = None,
    sequences: Annotated[int, typer.Option(help="Corpus sequences to compare on.")] = 16,
    seq_len: Annotated[int, typer.Option(help="Tokens per corpus sequence.")] = 64,
    batch_size: Annotated[int, typer.Option(help="Sequences per forward pass.")] = 4,
    top: TopOpt = 10,
    text: Annotated[
        bool, typer.Option(help="Only put the continuations side by side (for models with different tokenizers).")
    ] = False,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens to generate per prompt with --text.")] = 20,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
    out_file: OutOpt = None,
) -> None:
    """Compare two models: CKA per layer, output KL and loss, changed heads, prompts and positions."""
    from ..methods.compare.models import compare_generations, compare_models

    a = load_model(None if model_a == "default" else model_a, dtype, device)
    b = load_model(None if model_b == "default" else model_b, dtype, device)
    if text:
        if not prompt:
            raise InputError("--text compares continuations of prompts; give at least one --prompt")
        generations = compare_generations(a, b, prompt, max_new_tokens=max_new_tokens)

        def show_text() -> None:
            table = Table(title=escape(f"{generations.model_a} vs {generations.model_b}"))
            for column in ("prompt", "A", "B"):
                table.add_column(column)
            for p, x, y in zip(generations.prompts, generations.texts_a, generations.texts_b, strict=True):
                table.add_row(escape(repr(p)), escape(repr(x)), escape(repr(y)))
            out.print(table)

        emit(generations, as_json, out_file, show_text)
        return
    result = compare_models(
        a, b, corpus=corpus, prompts=prompt, sequences=sequences, seq_len=seq_len, batch_size=batch_size, top=top
    )

    def show() -> None:
        table = Table(
            title=escape(f"{result.model_a} vs {result.model_b} on {result.source}"),
            caption=escape(
                f"loss A {result.loss_a:.4f}, B {result.loss_b:.4f} nats/token · KL(A || B) {result.kl:.4f} nats"
            ),
        )
        table.add_column("layers (A / B)")
        table.add_column("linear CKA", justify="right")
        for (la, lb), value in zip(result.layers, result.cka, strict=True):
            table.add_row(f"{la} / {lb}", f"{value:.4f}")
        out.print(table)
        if result.top_heads:
            out.print(_changes_table("heads whose attention changed most (TV distance)", result.top_heads))
        sequences_table = Table(title="sequences whose predictions changed most")
        for column in ("KL", "loss A", "loss B", "text"):
            sequences_table.add_column(column, justify="left" if column == "text" else "right")
        for s in result.top_sequences:
            sequences_table.add_row(f"{s.kl:.4f}", f"{s.loss_a:.3f}", f"{s.loss_b:.3f}", escape(repr(s.text)))
        out.print(sequences_table)

    emit(result, as_json, out_file, show)


def show_side_effects(result: SideEffects) -> None:
    table = Table(title=escape(f"side effects of {'; '.join(result.intervention)}"))
    for column in ("measure", "before", "after", "change"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    if result.target:
        t = result.target
        table.add_row(escape(f"{t.metric} on {t.prompt!r}"), f"{t.before:.4f}", f"{t.after:.4f}", f"{t.change:+.4f}")
    if result.corpus:
        c = result.corpus
        table.add_row(
            escape(f"loss on {c.source}"),
            f"{c.loss_before:.4f}",
            f"{c.loss_after:.4f}",
            f"{c.loss_after - c.loss_before:+.4f}",
        )
        table.add_row("KL(before || after), mean / max", "", "", f"{c.kl_mean:.4f} / {c.kl_max:.4f}")
    for n in result.neutral:
        table.add_row(
            escape(f"{n.prompt!r}: next token, KL"),
            escape(repr(n.top_before)),
            escape(repr(n.top_after)),
            f"{n.kl_last:.4f}",
        )
    out.print(table)


def show_composition(result: Composition) -> None:
    for mode, pairs in result.top.items():
        mean, std, _ = result.baseline[mode]
        median, mad, n = result.spread[mode]
        table = Table(
            title=escape(f"{MODE_NAMES[mode]}: strongest pairs"),
            caption=f"random weights {mean:.4f} ± {std:.4f} · this model's {n} pairs: median {median:.4f}, "
            f"MAD {mad:.4f}",
        )
        for column in ("writer -> reader", "score", "robust z", "z vs random", "roles"):
            table.add_column(column, justify="left" if column in ("writer -> reader", "roles") else "right")
        for p in pairs:
            labels = f"{'/'.join(p.writer_roles) or '-'} -> {'/'.join(p.reader_roles) or '-'}"
            table.add_row(p.label, f"{p.score:.4f}", f"{p.robust_z:.1f}", f"{p.z:.1f}", escape(labels))
        out.print(table)
    if result.role_pairs:
        best = result.role_pairs[0]
        out.print(f"strongest previous-token -> induction K-composition: {best.label} ({best.score:.4f})")


def show_features(result: FeatureInfluence) -> None:
    table = Table(
        title=escape(f"{result.upstream_hook} -> {result.downstream_hook} at {result.tokens[result.position]!r}"),
        caption="estimate: gradient x activation; patched: the real drop when the source feature is zeroed",
    )
    for column in ("source", "target", "estimate", "patched", "mostly from"):
        table.add_column(column, justify="right")
    for e in result.edges:
        patched = "-" if e.patched is None else f"{e.patched:.4g}"
        where = escape(f"{e.top_position} {result.tokens[e.top_position]!r}")
        table.add_row(str(e.source), str(e.target), f"{e.weight:.4g}", patched, where)
    out.print(table)


declare_command(OPERATIONS["compare-prompts"], show_prompts, on=compare_app, cli_name="prompts")
declare_command(OPERATIONS["compare-side-effects"], show_side_effects, on=compare_app, cli_name="side-effects")
declare_command(OPERATIONS["compare-composition"], show_composition, on=compare_app, cli_name="composition")
declare_command(OPERATIONS["compare-features"], show_features, on=compare_app, cli_name="features")
