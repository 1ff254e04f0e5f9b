"""Circuit view data: the components that matter most for a metric, and the measured paths between them.

Nodes come from a patching table: anything with ``.cells`` (records with ``site``, ``layer``, ``head``,
``position``, ``raw``, ``normalised``, as attributes or dict keys) and, where known, ``metric``,
``clean_value``, ``corrupted_value`` and ``direction`` or ``mode`` (``"denoising"``: clean activations patched into
the corrupted run, the default; ``"noising"``: the reverse). ``normalised`` is 0 at the corrupted run's
metric and 1 at the clean run's (``metrics.normalised``). A node's effect is the share of the clean-corrupted
difference its patch moves: ``normalised`` when denoising, ``1 - normalised`` when noising. A component
patched at several positions separately takes its largest effect (the position is kept); a cell patched at
every position (``position=None``) wins over per-position cells.

Edges come from path patching (sender -> receiver, effect = the path's share of the difference). Between
kept nodes that no path patching measured, layer-ordered edges are listed with ``measured: false`` and no
effect: they say what *could* connect, never what does, and must not be drawn as measured.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ...errors import InputError
from ...model.model import Model
from ...views.explanations import explanation
from ...views.figures import Bars, Figure, Heatmap
from ...views.result import Record, Result
from ..metrics import make_metric, normalised
from .patching import activation_patching
from .path_patching import LOGITS, PathPatching, path_patching

HEAD_SITES = ("attn.z", "attn.head_out", "z", "head_out", "head")
MLP_SITES = ("mlp_out", "mlp.post", "mlp")
EMBED = "embed"


class PatchingTable(Protocol):
    """What the circuit builder reads from a patching or attribution-patching result."""

    cells: Sequence[Any]


@dataclass(frozen=True)
class CircuitNode(Record):
    id: str  # "embed", "L{l}.H{h}", "L{l}.MLP", "logits"
    kind: str  # embed | head | mlp | logits
    layer: int | None
    head: int | None
    effect: float | None  # share of the clean-corrupted difference (None: not measured)
    raw: float | None
    normalised: float | None
    position: int | None
    depth: float  # drawing order: embed -1, heads at layer l, MLPs at l + 0.5, logits n_layers


@dataclass(frozen=True)
class CircuitEdge(Record):
    source: str
    target: str
    measured: bool
    effect: float | None  # share of the clean-corrupted difference the path carries (None: not measured)
    metric_change: float | None
    via: list[str]  # the receivers the path was measured into
    joint: bool  # measured together with other receivers' paths (one number for all of them)
    shared_kv: bool  # measured into keys/values that other query heads of a grouped-query layer read too


@dataclass(frozen=True)
class Circuit(Result):
    kind = "circuit"

    model: str
    metric: str
    clean_value: float | None
    corrupted_value: float | None
    source: dict
    thresholds: dict
    nodes: list[CircuitNode]
    edges: list[CircuitEdge]

    def figure(self) -> Figure:
        ordered = sorted(self.nodes, key=lambda n: n.depth)
        measured_nodes = [n for n in ordered if n.effect is not None]
        panels: list[Heatmap | Bars] = [
            Bars(
                "kept components, in layer order: share of the clean-corrupted difference",
                [n.id for n in measured_nodes],
                [float(n.effect) for n in measured_nodes],
                "share of the difference",
                hover=[f"{n.id}: share {n.effect:+.3f}, metric {n.raw:.4f}" for n in measured_nodes],
            )
        ]
        measured = [e for e in self.edges if e.measured]
        if measured:
            panels.append(
                Bars(
                    "measured paths (path patching): share of the difference each carries",
                    [f"{e.source} → {e.target}" + (" (shared k/v)" if e.shared_kv else "") for e in measured],
                    [float(e.effect) for e in measured],
                    "share of the difference",
                    hover=[
                        f"{e.source} → {e.target} via {', '.join(e.via)}: share {e.effect:+.3f}, "
                        f"metric change {e.metric_change:+.4f}"
                        for e in measured
                    ],
                )
            )
            sources = [n.id for n in ordered if any(e.source == n.id for e in self.edges)]
            targets = [n.id for n in ordered if any(e.target == n.id for e in self.edges)]
            table = {(e.source, e.target): e for e in self.edges}
            panels.append(
                Heatmap(
                    "paths between kept components (blank: impossible, ?: possible but not measured)",
                    [[_cell_value(table.get((s, t))) for t in targets] for s in sources],
                    sources,
                    targets,
                    row_title="from",
                    col_title="to",
                    value_label="share of the difference",
                    cell_text=[[_cell_text(table.get((s, t))) for t in targets] for s in sources],
                    diverging=True,
                )
            )
        unmeasured = sum(not e.measured for e in self.edges)
        return Figure(
            f"{self.model}: circuit for {self.metric}",
            panels,
            **explanation("circuit"),
            extra={
                "nodes kept": str(sum(n.kind in ("head", "mlp") for n in self.nodes)),
                "measured paths": str(len(measured)),
                "unmeasured paths": str(unmeasured),
            },
        )


def build_circuit(
    tables: PatchingTable | Mapping | Sequence[PatchingTable | Mapping],
    paths: Iterable[PathPatching] = (),
    *,
    top: int | None = 10,
    threshold: float | None = None,
    model: str = "",
    n_layers: int | None = None,
) -> Circuit:
    """A pruned graph: the ``top`` components by |effect| (and only those with |effect| >= ``threshold``), the
    embedding and the logits; edges measured by ``paths``, else layer-ordered edges flagged as not measured.

    ``tables``: one patching result (or its ``to_dict()``) with ``cells``, or several (e.g. a head sweep and an
    MLP sweep); ``n_layers`` places the logits node (default: one past the deepest cell).
    """
    if top is not None and top < 1:
        raise InputError(f"top must be at least 1, got {top}")
    if threshold is not None and threshold < 0:
        raise InputError(f"threshold is compared with |effect|, so it must be >= 0, got {threshold}")
    tables = [tables] if _field(tables, "cells") is not None else list(tables)
    if not tables or not any(_field(t, "cells") for t in tables):
        raise InputError("the patching table has no cells; run a patching sweep over heads or MLPs first")
    best: dict[str, CircuitNode] = {}
    ignored: set[str] = set()
    for table in tables:
        direction = _direction(table)
        clean_value, corrupted_value = _field(table, "clean_value"), _field(table, "corrupted_value")
        for record in _field(table, "cells") or ():
            node = _node(record, direction, clean_value, corrupted_value)
            if node is None:
                ignored.add(str(_field(record, "site")))
                continue
            held = best.get(node.id)
            if held is None or _better(node, held):
                best[node.id] = node
    if not best:
        raise InputError(
            f"no head, MLP or embedding cells in the table (sites: {', '.join(sorted(ignored))}); "
            "patch attn.z / head_out per head or mlp_out per layer"
        )
    ranked = sorted(
        (n for n in best.values() if n.kind != EMBED), key=lambda n: -abs(n.effect if n.effect is not None else 0)
    )
    if threshold is not None:
        ranked = [n for n in ranked if n.effect is not None and abs(n.effect) >= threshold]
    kept = ranked[:top] if top is not None else ranked
    deepest = max((n.layer for n in best.values() if n.layer is not None), default=-1)
    depth_logits = float(n_layers if n_layers is not None else deepest + 1)
    embed = best.get(EMBED) or CircuitNode(EMBED, EMBED, None, None, None, None, None, None, -1.0)
    logits = CircuitNode(LOGITS, LOGITS, None, None, None, None, None, None, depth_logits)
    nodes = [embed, *sorted(kept, key=lambda n: (n.depth, n.head or 0)), logits]
    edges, path_sources = _edges(nodes, list(paths))
    first = tables[0]
    return Circuit(
        model or str(_field(first, "model") or ""),
        str(_field(first, "metric") or ""),
        _field(first, "clean_value"),
        _field(first, "corrupted_value"),
        {
            "nodes_from": [
                {
                    "kind": str(t.get("kind", "table")) if isinstance(t, Mapping) else type(t).__name__,
                    "site": _field(t, "site"),
                    "direction": _direction(t),
                }
                for t in tables
            ],
            "edges_from": path_sources,
            "ignored_sites": sorted(ignored),
            "effect": "share of the clean-corrupted metric difference moved (1 = all of it)",
        },
        {"top": top, "threshold": threshold, "candidates": len(best) - (EMBED in best), "kept": len(kept)},
        nodes,
        edges,
    )


def circuit(
    model: Model,
    clean: str,
    corrupted: str,
    *,
    target: str | int | None = None,
    versus: str | int | None = None,
    metric: str = "logit_diff",
    position: int = -1,
    top: int | None = 10,
    threshold: float | None = None,
    head_edges: bool = False,
    batch_size: int = 64,
) -> Circuit:
    """Noising activation patching of every head (``attn.z``) and every MLP (``mlp_out``), each alone at every
    position; keep the strongest; then path patching from each kept head to the logits (and, with
    ``head_edges``, from each kept head into every later kept head's q, k and v together; in grouped-query
    models the k and v are shared with the other heads of the receiver's group, and such edges say so with
    ``shared_kv``)."""
    measure = make_metric(model, metric, target=target, versus=versus, position=position)
    sweeps = [
        activation_patching(
            model, clean, corrupted, metric=measure, site=site, position=where, noising=True, batch_size=batch_size
        )
        for site, where in (("attn.z", None), ("mlp_out", "all"))
    ]
    draft = build_circuit(sweeps, top=top, threshold=threshold, model=model.name, n_layers=model.n_layers)
    heads = [(n.layer, n.head) for n in draft.nodes if n.kind == "head"]
    options = dict(metric=metric, target=target, versus=versus, position=position, batch_size=batch_size)
    paths = []
    if heads:
        paths.append(path_patching(model, clean, corrupted, senders=heads, **options))
    if head_edges:
        for layer, head in heads:
            earlier = [s for s in heads if s[0] < layer]
            if earlier:
                receivers = [f"{layer}.{head}.{site}" for site in ("q", "k", "v")]
                paths.append(path_patching(model, clean, corrupted, senders=earlier, receivers=receivers, **options))
    return build_circuit(sweeps, paths, top=top, threshold=threshold, model=model.name, n_layers=model.n_layers)


def _direction(table: Any) -> str:
    """Patching results call it ``mode``; a table that says nothing is taken as denoising."""
    return str(_field(table, "direction") or _field(table, "mode") or "denoising")


def _field(record: Any, name: str) -> Any:
    if isinstance(record, Mapping):
        return record.get(name)
    return getattr(record, name, None)


def _node(record: Any, direction: str, clean: float | None, corrupted: float | None) -> CircuitNode | None:
    site = str(_field(record, "site") or "")
    layer, head, position = _field(record, "layer"), _field(record, "head"), _field(record, "position")
    raw, norm = _field(record, "raw"), _field(record, "normalised")
    if norm is None and raw is not None and clean is not None and corrupted is not None:
        norm = float(normalised(float(raw), float(clean), float(corrupted)))
    effect = None if norm is None else (float(norm) if direction == "denoising" else 1.0 - float(norm))
    raw = None if raw is None else float(raw)
    position = None if position is None else int(position)
    if site == EMBED:
        return CircuitNode(EMBED, EMBED, None, None, effect, raw, norm, position, -1.0)
    if layer is None:
        return None
    layer = int(layer)
    if site in HEAD_SITES and head is not None:
        return CircuitNode(f"L{layer}.H{int(head)}", "head", layer, int(head), effect, raw, norm, position, layer)
    if site in MLP_SITES and head is None:
        return CircuitNode(f"L{layer}.MLP", "mlp", layer, None, effect, raw, norm, position, layer + 0.5)
    return None


def _better(new: CircuitNode, held: CircuitNode) -> bool:
    """An all-positions cell beats per-position ones; otherwise the larger |effect| wins."""
    if (new.position is None) != (held.position is None):
        return new.position is None
    return abs(new.effect or 0.0) > abs(held.effect or 0.0)


def _edges(nodes: list[CircuitNode], paths: list[PathPatching]) -> tuple[list[CircuitEdge], list[dict]]:
    kept = {n.id: n for n in nodes}
    measured: dict[tuple[str, str], CircuitEdge] = {}
    sources = []
    for result in paths:
        targets = list(
            dict.fromkeys(LOGITS if r == LOGITS else "L{}.H{}".format(*r.split(".")[:2]) for r in result.receivers)
        )
        sources.append({"method": "path_patching", "receivers": result.receivers, "direction": result.direction})
        for row in result.rows:
            if len(row.senders) != 1:
                continue
            sender = "L{}.H{}".format(*row.senders[0])
            for target in targets:
                if sender in kept and target in kept and kept[sender].depth < kept[target].depth:
                    via = [r for r in result.receivers if r == LOGITS or "L{}.H{}".format(*r.split(".")[:2]) == target]
                    shared = result.kv_group > 1 and any(r.endswith((".k", ".v")) for r in via)
                    measured[(sender, target)] = CircuitEdge(
                        sender, target, True, row.fraction, row.effect, via, len(targets) > 1, shared
                    )
    edges = []
    for i, a in enumerate(nodes):
        for b in nodes[i + 1 :]:
            if a.depth >= b.depth:
                continue
            edges.append(measured.get((a.id, b.id)) or CircuitEdge(a.id, b.id, False, None, None, [], False, False))
    return edges, sources


def _cell_value(edge: CircuitEdge | None) -> float:
    return float(edge.effect) if edge is not None and edge.measured else 0.0


def _cell_text(edge: CircuitEdge | None) -> str:
    if edge is None:
        return ""
    return f"{edge.effect:+.2f}" if edge.measured else "?"
