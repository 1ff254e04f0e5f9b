"""Feature-to-feature influence across layers: how much an SAE feature upstream drives one downstream.

Two SAEs read two hooks, the upstream one earlier in the forward pass. On a prompt, the upstream SAE is
spliced into its hook: the activation becomes ``decode(f) + error``, where ``f`` are its features (a
leaf of the autograd graph) and ``error = x - decode(f)`` is held fixed, so the forward pass is the
model's own (up to float rounding) and gradients flow to the features. For each chosen downstream
feature ``j`` at ``position``:

    influence(i -> j) = sum over upstream positions p of  f_i[p] * d f_j / d f_i[p]

(gradient x activation): the first-order estimate of how much ``f_j`` would drop if upstream feature
``i`` were zeroed at every position. The strongest edges are then checked by patching: feature ``i`` is
zeroed at every position through ``glasslab.sae``'s splice (``FeatureEdit(i, mode="zero")``), and the
real drop of ``f_j`` is recorded beside the estimate.

Downstream features: the ``downstream_top`` most active at ``position``, or the ones given.
The graph keeps the ``max_edges`` edges with the largest |influence|; its nodes are the features those
edges touch (upstream and downstream), with their activations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ...dictionaries.fit import check_fits
from ...errors import InputError
from ...interventions.splice import FeatureEdit, SAESplice
from ...model.hooks import ApplyContext, Layout
from ...model.model import Model
from ...views.explanations import explanation
from ...views.figures import Bars, Figure, Heatmap
from ...views.result import Record, Result


@dataclass(frozen=True)
class FeatureNode(Record):
    json_keys = ("id", "hook", "feature", "activation")

    hook: str
    feature: int
    activation: float  # at the compared position (downstream), or summed over positions (upstream)

    @property
    def label(self) -> str:
        return f"{self.hook}#{self.feature}"

    def _json_id(self) -> str:
        return self.label


@dataclass(frozen=True)
class FeatureEdge(Record):
    source: int  # upstream feature
    target: int  # downstream feature
    weight: float  # gradient x activation, summed over upstream positions
    top_position: int  # the upstream position contributing most
    patched: float | None  # real drop of the target when the source is zeroed everywhere (None: not checked)


@dataclass(frozen=True)
class FeatureInfluence(Result):
    kind = "feature_influence"
    json_keys = ("model", "prompt", "tokens", "upstream_hook", "downstream_hook", "position", "nodes", "edges")

    model: str
    prompt: str
    tokens: list[str]
    upstream_hook: str
    downstream_hook: str
    position: int
    upstream: list[FeatureNode]
    downstream: list[FeatureNode]
    edges: list[FeatureEdge]  # strongest first
    matrix: list[list[float]]  # [upstream node][downstream node] influence, 0 where pruned away

    def _json_nodes(self) -> list[dict]:
        return [n.to_dict() | {"side": "upstream"} for n in self.upstream] + [
            n.to_dict() | {"side": "downstream"} for n in self.downstream
        ]

    def _json_edges(self) -> list[dict]:
        """Each edge with the ids of the nodes it joins, so a graph view needs no other lookup."""
        return [
            e.to_dict()
            | {"source_id": f"{self.upstream_hook}#{e.source}", "target_id": f"{self.downstream_hook}#{e.target}"}
            for e in self.edges
        ]

    def figure(self) -> Figure:
        labels = [f"{e.source} -> {e.target}" for e in self.edges]
        panels: list[Heatmap | Bars] = [
            Heatmap(
                "influence of upstream features (rows) on downstream features (columns)",
                self.matrix,
                [f"up #{n.feature}" for n in self.upstream],
                [f"down #{n.feature}" for n in self.downstream],
                self.upstream_hook,
                self.downstream_hook,
                "gradient x activation",
                cell_text=[[f"{v:.2g}" if v else "" for v in row] for row in self.matrix],
                diverging=True,
            ),
            Bars(
                "strongest edges (gradient x activation)",
                labels,
                [e.weight for e in self.edges],
                "downstream activation units",
                hover=[
                    f"feature {e.source} -> {e.target}: estimate {e.weight:.4g}"
                    + (f", zeroing it really changes the target by {-e.patched:.4g}" if e.patched is not None else "")
                    + f"; mostly from position {e.top_position} {self.tokens[e.top_position]!r}"
                    for e in self.edges
                ],
            ),
        ]
        checked = [e for e in self.edges if e.patched is not None]
        if checked:
            panels.append(
                Bars(
                    "check by patching: real drop of the target when the source feature is zeroed",
                    [f"{e.source} -> {e.target}" for e in checked],
                    [e.patched for e in checked],
                    "downstream activation units",
                    hover=[f"estimate {e.weight:.4g}, patched {e.patched:.4g}" for e in checked],
                )
            )
        return Figure(
            f"{self.model}: which features at {self.upstream_hook} drive features at {self.downstream_hook}",
            panels,
            **explanation(
                "feature_influence",
                downstream_hook=self.downstream_hook,
                token=repr(self.tokens[self.position]),
                upstream_hook=self.upstream_hook,
            ),
            extra={"prompt": self.prompt, "position": f"{self.position} {self.tokens[self.position]!r}"},
        )


class _Leaf:
    """Splices an SAE into its hook with its features as an autograd leaf (the error term held fixed)."""

    def __init__(self, sae) -> None:
        self.sae = sae
        self.hook = sae.hook
        self.features: torch.Tensor | None = None

    def apply(self, act: torch.Tensor, layout: Layout, ctx: ApplyContext) -> torch.Tensor:
        x = self.sae.read(act).detach()
        with torch.no_grad():
            features = self.sae.encode(x)
            error = x - self.sae.decode(features, like=x)
        self.features = features.clone().requires_grad_(True)
        return self.sae.write(self.sae.decode(self.features, like=x) + error, act)

    def check_index(self, hook_name: str, layout: Layout, sizes: dict[str, int]) -> None:
        return None

    def check_positions(self, prompt_lengths: torch.Tensor, max_length: int) -> None:
        return None


def _check_pair(model: Model, upstream, downstream) -> None:
    for sae in (upstream, downstream):
        if not hasattr(sae, "encode") or not hasattr(sae, "hook"):
            raise InputError("feature influence takes two glasslab SAEs (glasslab.sae.SAE)")
        check_fits(sae, model)
    order = model.hooks()
    if order.index(upstream.hook) >= order.index(downstream.hook):
        raise InputError(
            f"the upstream SAE reads '{upstream.hook}', which does not come before '{downstream.hook}' in the "
            "forward pass; swap them or pick an earlier upstream hook"
        )


def _downstream_features(sae, act: torch.Tensor, position: int) -> torch.Tensor:
    return sae.encode(sae.read(act))[0, position]


def feature_influence(
    model: Model,
    prompt: str,
    upstream,
    downstream,
    *,
    position: int = -1,
    features: Sequence[int] | None = None,
    downstream_top: int = 5,
    max_edges: int = 20,
    verify: int = 3,
) -> FeatureInfluence:
    """Influence of ``upstream`` SAE features on ``downstream`` SAE features at ``position`` (module doc).

    ``features``: downstream features to explain (default: the ``downstream_top`` most active at
    ``position``). ``verify``: how many of the strongest edges to check by zeroing the source feature.
    """
    _check_pair(model, upstream, downstream)
    if not 1 <= downstream_top <= 100 or not 1 <= max_edges <= 1000 or verify < 0:
        raise InputError("downstream_top must be in 1..100, max_edges in 1..1000 and verify at least 0")
    tokens = model.to_tokens(prompt)
    n = tokens.shape[1]
    if not -n <= position < n:
        raise InputError(f"position {position} is out of range for a prompt of {n} tokens")
    position %= n
    stop = model.hook_spec(downstream.hook).layer
    stop = None if stop is None else stop + 1
    leaf = _Leaf(upstream)
    run = model.run(tokens, cache=[downstream.hook], interventions=[leaf], grad=True, stop_at_layer=stop, logits=False)
    target = _downstream_features(downstream, run.cache[downstream.hook], position)
    if features is None:
        active = int((target > 0).sum())
        if active == 0:
            raise InputError(f"no downstream feature is active at position {position}; pick another position")
        chosen = target.detach().topk(min(downstream_top, active)).indices.tolist()
    else:
        chosen = [int(f) for f in features]
        bad = [f for f in chosen if not 0 <= f < downstream.d_sae]
        if bad or not chosen:
            raise InputError(
                f"downstream feature {bad[0] if bad else '(none)'} is out of range (0..{downstream.d_sae - 1})"
            )
    up = leaf.features  # [1, pos, d_up]
    per_position = []
    for k, j in enumerate(chosen):
        (grad,) = torch.autograd.grad(target[j], up, retain_graph=k < len(chosen) - 1)
        per_position.append((grad * up.detach())[0].float())  # [pos, d_up]
    contributions = torch.stack(per_position)  # [downstream, pos, d_up]
    totals = contributions.sum(1)  # [downstream, d_up]
    flat = totals.abs().flatten()
    keep = flat.topk(min(max_edges, int((flat > 0).sum()) or 1)).indices.tolist()
    edges = []
    for index in keep:
        row, source = divmod(index, totals.shape[1])
        top_position = int(contributions[row, :, source].abs().argmax())
        edges.append(FeatureEdge(source, chosen[row], float(totals[row, source]), top_position, None))
    values = target.detach()
    edges = [
        _patched(model, tokens, upstream, downstream, e, position, float(values[e.target]), stop) if i < verify else e
        for i, e in enumerate(edges)
    ]
    sources = list(dict.fromkeys(e.source for e in edges))
    up_totals = up.detach()[0].sum(0)
    matrix = [[0.0] * len(chosen) for _ in sources]
    for e in edges:
        matrix[sources.index(e.source)][chosen.index(e.target)] = e.weight
    return FeatureInfluence(
        model=model.name,
        prompt=prompt,
        tokens=model.to_str_tokens(tokens[0]),
        upstream_hook=upstream.hook,
        downstream_hook=downstream.hook,
        position=position,
        upstream=[FeatureNode(upstream.hook, f, float(up_totals[f])) for f in sources],
        downstream=[FeatureNode(downstream.hook, j, float(values[j])) for j in chosen],
        edges=edges,
        matrix=matrix,
    )


def _patched(model, tokens, upstream, downstream, edge: FeatureEdge, position: int, clean: float, stop) -> FeatureEdge:
    """The edge with the real drop of its target when its source is zeroed at every position."""
    splice = SAESplice(upstream, [FeatureEdit(edge.source, mode="zero")])
    run = model.run(tokens, cache=[downstream.hook], interventions=[splice], stop_at_layer=stop, logits=False)
    ablated = float(_downstream_features(downstream, run.cache[downstream.hook], position)[edge.target])
    return FeatureEdge(edge.source, edge.target, edge.weight, edge.top_position, clean - ablated)
