"""``glasslab sae``: list SAEs, the features on a prompt, one feature's dashboard, clamp features, label them.

``sae list``, ``sae label``, ``sae features``, ``sae feature`` and ``sae clamp`` are declared in
``glasslab.operations`` (features, feature_files): here only how their results read. The ``sae`` sub-app
lives here; ``sae train`` and ``sae eval`` (cli/sae_training.py) add to it.
"""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from ..dictionaries.catalog import SAECatalog
from ..methods.features.clamp import FeatureClamp, FeatureClampSweep
from ..methods.features.dashboard import FeatureDashboard
from ..methods.features.encode import FeatureActivations, FeatureTrace
from ..operations import OPERATIONS
from ..operations.feature_files import LabelEdit
from .app import app, out
from .derived import declare_command

sae_app = typer.Typer(
    no_args_is_help=True,
    help="Sparse autoencoders: list them, see features on a prompt, feature dashboards, clamp features, train.",
)
app.add_typer(sae_app, name="sae")


def show_catalog(result: SAECatalog) -> None:
    if not result.saes:
        out.print(
            f"no SAE known for {escape(result.model)}; train one: glasslab sae train --hook blocks.L.resid_post",
            highlight=False,
        )
        return
    table = Table(title=escape(f"SAEs for {result.model}"), caption="pass a name to --sae")
    for column in ("name", "source", "hook", "features", "on disk", "labels"):
        # Names are to be copied: fold long ones over lines, never cut them.
        table.add_column(column, justify="right" if column == "features" else "left", overflow="fold")
    for sae in result.saes:
        table.add_row(
            escape(sae.name),
            sae.source,
            escape(sae.hook),
            "?" if sae.d_sae is None else str(sae.d_sae),
            "yes" if sae.on_disk else "download",
            "yes" if sae.labels else "",
        )
    out.print(table)


declare_command(OPERATIONS["sae-list"], show_catalog, on=sae_app, cli_name="list")


def show_features(result: FeatureActivations) -> None:
    table = Table(
        title=escape(f"{result.sae} at {result.hook}"),
        caption="error: |activation - reconstruction| / |activation| (what the SAE misses)",
    )
    if result.max_density is not None:
        table.caption += f"; features on more than {result.max_density:.0%} of tokens set apart as dense"
    for column in ("pos", "token", "top features (activation)", "L0", "error"):
        table.add_column(column, justify="right" if column in ("pos", "L0", "error") else "left")
    for token in result.tokens:
        features = ", ".join(
            f"{s.feature}" + (f" {s.label!r}" if s.label else "") + f" {s.activation:.2f}" for s in token.top
        )
        table.add_row(
            str(token.position),
            escape(repr(token.token)),
            escape(features),
            str(token.l0),
            f"{token.relative_error:.3f}",
        )
    out.print(table)


declare_command(OPERATIONS["sae-features"], show_features, on=sae_app, cli_name="features")


def show_trace(trace: FeatureTrace) -> None:
    table = Table(title=escape(f"feature {trace.feature}" + (f" ({trace.label})" if trace.label else "")))
    table.add_column("pos", justify="right")
    table.add_column("token")
    table.add_column("activation", justify="right")
    for i, (token, value) in enumerate(zip(trace.tokens, trace.activations, strict=True)):
        table.add_row(str(i), escape(repr(token)), f"{value:.3f}" if value else "")
    out.print(table)


def show_dashboard(result: FeatureDashboard | FeatureTrace) -> None:
    if isinstance(result, FeatureTrace):  # --text: the feature on every token of a text
        show_trace(result)
        return
    title = f"feature {result.feature} of {result.sae} at {result.hook}"
    if result.label is not None:
        title += f": {result.label.label} ({result.label.source})"
    out.print(escape(title), highlight=False)
    out.print(
        f"fires on {result.density:.4%} of {result.tokens} tokens of {escape(result.corpus)}; "
        f"max {result.max_activation:.4g}",
        highlight=False,
    )
    if result.neuronpedia:
        out.print(f"Neuronpedia: {result.neuronpedia}", highlight=False)
    if not result.contexts:
        out.print("it never fired on the scanned text; scan more (--sequences) or another --corpus")
    table = Table(title="top-activating contexts ([bold]peak token[/] in bold)")
    table.add_column("max", justify="right")
    table.add_column("context")
    for context in result.contexts:
        pieces = [escape(t) for t in context.tokens]
        pieces[context.centre] = f"[bold reverse]{pieces[context.centre]}[/]"
        table.add_row(f"{context.activation:.3f}", "".join(pieces).replace("\n", "\\n"))
    if result.contexts:
        out.print(table)
    for name, effects in (("promotes", result.promotes), ("suppresses", result.suppresses)):
        if effects:
            out.print(f"{name}: " + ", ".join(escape(repr(t.token)) for t in effects), highlight=False)
    if result.direction_note:
        out.print(escape(result.direction_note), highlight=False)


declare_command(OPERATIONS["sae-dashboard"], show_dashboard, on=sae_app, cli_name="feature")


def show_sweep(result: FeatureClampSweep) -> None:
    table = Table(
        title=escape(f"{result.prompt!r}: features {', '.join(map(str, result.features))} at {result.hook}"),
        caption=escape(f"baseline: {result.baseline!r}"),
    )
    for column in ("clamp", f"p({result.baseline_top!r})", "KL", "next", "continuation"):
        table.add_column(escape(column), justify="right" if column in ("KL",) else "left")
    table.add_row("baseline", f"{result.baseline_top_prob:.3f}", "0", "", escape(result.baseline))
    for row in result.rows:
        table.add_row(
            f"{'x' if result.mode == 'scale' else '='}{row.amount:g}",
            f"{row.baseline_top_prob:.3f}",
            f"{row.kl:.3f}",
            escape(repr(row.next_top)),
            escape(row.completion.replace("\n", "\\n")),
        )
    out.print(table)


def show_clamp(clamp: FeatureClamp | FeatureClampSweep) -> None:
    if isinstance(clamp, FeatureClampSweep):  # --sweep: one row per amount
        show_sweep(clamp)
        return
    table = Table(title=escape(f"{clamp.describe()} at {clamp.hook}"))
    table.add_column("")
    table.add_column("next token")
    table.add_column("continuation")
    nt = clamp.next_token
    table.add_row("baseline", escape(repr(nt.baseline_top)), escape(clamp.baseline.replace("\n", "\\n")))
    table.add_row("clamped", escape(repr(nt.clamped_top)), escape(clamp.clamped.replace("\n", "\\n")))
    out.print(table)
    out.print(f"next-token KL(baseline || clamped): {nt.kl:.4f} nats", highlight=False)


declare_command(OPERATIONS["sae-clamp"], show_clamp, on=sae_app, cli_name="clamp")


def show_label(result: LabelEdit) -> None:
    if result.cleared is not None:
        now = "no label" if result.label is None else f"{result.label.label!r} ({result.label.source})"
        said = "your label removed" if result.cleared else "had no label of yours"
        out.print(escape(f"feature {result.feature}: {said}; {now}"), highlight=False)
        return
    label = result.label.label if result.label is not None else ""
    out.print(
        escape(f"feature {result.feature} of {result.sae}: {label!r} (user), kept in glasslab's store"),
        highlight=False,
    )


declare_command(OPERATIONS["sae-label"], show_label, on=sae_app, cli_name="label")
