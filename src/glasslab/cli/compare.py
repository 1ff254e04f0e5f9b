"""``glasslab compare ...``: two prompts, two models, side effects of an intervention, head composition,
feature influence. All are declared in ``glasslab.operations.compare`` (``compare models`` loads its two
models itself): here only how their results read."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from ..methods.compare.composition import MODE_NAMES, Composition
from ..methods.compare.feature_influence import FeatureInfluence
from ..methods.compare.generations import GenerationComparison
from ..methods.compare.models_result import ModelComparison
from ..methods.compare.prompts import PromptComparison
from ..methods.compare.side_effects import SideEffects
from ..operations import OPERATIONS
from .app import app, out
from .derived import declare_command

compare_app = typer.Typer(
    no_args_is_help=True, help="Compare two prompts, two models, a model with and without an intervention, heads."
)
app.add_typer(compare_app, name="compare")


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


def show_generations(generations: GenerationComparison) -> None:
    table = Table(title=escape(f"{generations.model_a} vs {generations.model_b}"))
    for column in ("prompt", "A", "B"):
        table.add_column(column)
    for p, x, y in zip(generations.prompts, generations.texts_a, generations.texts_b, strict=True):
        table.add_row(escape(repr(p)), escape(repr(x)), escape(repr(y)))
    out.print(table)


def show_models(result: ModelComparison | GenerationComparison) -> None:
    if isinstance(result, GenerationComparison):  # --text: continuations side by side
        show_generations(result)
        return
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
declare_command(OPERATIONS["compare-models"], show_models, on=compare_app, cli_name="models")
declare_command(OPERATIONS["compare-side-effects"], show_side_effects, on=compare_app, cli_name="side-effects")
declare_command(OPERATIONS["compare-composition"], show_composition, on=compare_app, cli_name="composition")
declare_command(OPERATIONS["compare-features"], show_features, on=compare_app, cli_name="features")
