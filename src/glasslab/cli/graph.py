"""``glasslab graph``: an attribution graph of the prompt's next token, and ``glasslab graph-intervene``: a check
of it by setting features (declared in ``glasslab.operations.graphs``: here only how they read in a terminal)."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from ..methods.graphs import AttributionGraph
from ..methods.graphs.intervene import GraphIntervention
from ..operations import OPERATIONS
from .app import out
from .derived import declare_command

SHOWN_FEATURES = 15


def show_graph(result: AttributionGraph) -> None:
    targets = Table(title=escape(f"targets of {result.prompt!r}"))
    for column in ("target", "probability", "logit - mean", "weight"):
        targets.add_column(column, justify="left" if column == "target" else "right")
    for t in result.targets:
        targets.add_row(escape(repr(t["label"])), f"{t['probability']:.3f}", f"{t['logit']:.3f}", f"{t['weight']:.3f}")
    out.print(targets)
    features = sorted((n for n in result.nodes if n.kind in ("feature", "error")), key=lambda n: -n.influence)
    table = Table(title=f"most influential nodes (of {len(result.nodes)} kept, {len(result.edges)} edges)")
    for column in ("node", "layer", "position", "token", "value", "influence"):
        table.add_column(column, justify="left" if column in ("node", "token") else "right")
    for n in features[:SHOWN_FEATURES]:
        token = escape(repr(result.tokens[n.position]))
        table.add_row(n.id, str(n.layer), str(n.position), token, f"{n.value:.3f}", f"{n.influence:.3f}")
    out.print(table)
    scores, pruned = result.scores, result.pruned_scores
    out.print(
        f"replacement score {scores.replacement:.3f} (pruned {pruned.replacement:.3f}), completeness "
        f"{scores.completeness:.3f} (pruned {pruned.completeness:.3f}); {result.n_active_features} active "
        f"features, {result.n_feature_nodes} computed as nodes; replay error {result.replay_error:.2g}",
        highlight=False,
    )
    out.print("[dim]--out graph.html draws it (hover, click, prune); --neuronpedia FILE.json exports it.[/]")


declare_command(
    OPERATIONS["graph"],
    show_graph,
    more_help="Example: glasslab graph 'The capital of France is' --transcoders mine --target ' Paris' "
    "--out graph.html",
)


def show_intervention(result: GraphIntervention) -> None:
    changes = ", ".join(f"{node}={value:g}" for node, value in result.changes.items())
    table = Table(title=escape(f"changes of each target (logit - mean) when {changes}"))
    for column in ("target", "graph predicts", "frozen attention", "real model"):
        table.add_column(column, justify="left" if column == "target" else "right")
    for t in result.targets:
        table.add_row(escape(repr(t.label)), f"{t.graph:+.4f}", f"{t.frozen:+.4f}", f"{t.unfrozen:+.4f}")
    out.print(table)


declare_command(
    OPERATIONS["graph-intervene"],
    show_intervention,
    more_help="Example: glasslab graph-intervene 'The capital of France is' -t mine --target ' Paris' "
    "--change f:3:5:120=0 (node ids as glasslab graph --json lists them)",
)
