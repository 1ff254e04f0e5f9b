"""Ablation: knock out heads, attention or MLP blocks, neurons (optionally at chosen positions) and
measure what a metric loses; sweeps knock out every head (or every layer's attention and MLP) in turn.

What is ablated where:
- a head at ``blocks.{L}.attn.z``, the head's output before the output projection. Zeroing ``z[h]`` is
  exactly removing head ``h``'s slice of ``W_O``, and in post-norm families (Gemma 2/3) the norm after
  attention then re-normalises what is left, as the real model would; ablating ``attn.head_out`` would
  hold that norm's scale fixed instead (docs/hooks.md).
- a whole attention or MLP block at ``blocks.{L}.attn_out`` / ``blocks.{L}.mlp_out`` (what it adds to the
  residual stream, after any post-norm); a neuron at ``blocks.{L}.mlp.post``.

How: ``zero``; ``mean``, the activation's mean over a corpus or reference prompts (over every real token
except the BOS at position 0, whose activations are atypical), computed once per hook by
``mean_activations`` and reusable across calls; ``resample``, another prompt's activation at the same
position, drawn from reference prompts by a seeded generator (``samples`` draws, metric averaged).

Batching: one forward pass carries many ablations of the same prompt. Row ``i`` of the batch gets its own
ablation through a ``Replace`` per hook whose function selects row ``i``'s cells; a sweep of every head
of an 18-layer model is then a few forward passes, not 72.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ...errors import InputError
from ...model.model import Model
from ...views.explanations import explanation
from ...views.figures import Bars, Figure, Heatmap
from ...views.result import Result
from .ablation_engine import (  # also re-exported: defined here before the engine got its own module
    HOWS,  # noqa: F401
    Component,
    How,
    MeanActivations,
    _ablated_values,
    _prepare,
    components,
    mean_activations,  # noqa: F401
)

# ---------------------------------------------------------------------------------------------------
# One ablation


@dataclass(frozen=True)
class Ablation(Result):
    kind = "ablation"

    model: str
    prompt: str
    components: list[str]  # labels, e.g. "L9.H1", "L3 mlp", "L5.N120"
    hooks: list[str]
    how: str
    metric: str  # plain-English description
    metric_kind: str
    ablate_positions: list[int] | None  # None = every position
    reference: str | None  # what mean / resample values came from
    clean: float
    ablated: float
    difference: float  # ablated - clean

    def figure(self) -> Figure:
        return Figure(
            f"{self.model}: {self.how}-ablating {', '.join(self.components)}",
            [Bars(self.metric, ["clean", "ablated"], [self.clean, self.ablated], self.metric_kind)],
            **explanation("ablation"),
            extra={"difference": f"{self.difference:+.4f}", "hooks": ", ".join(self.hooks)}
            | ({"reference": self.reference} if self.reference else {}),
        )


def ablate(
    model: Model,
    prompt: str,
    *,
    target: str | None = None,
    versus: str | None = None,
    metric: str | None = None,
    position: int = -1,
    heads: Sequence[tuple[int, int]] = (),
    attn_layers: Sequence[int] = (),
    mlp_layers: Sequence[int] = (),
    neurons: Sequence[tuple[int, int]] = (),
    ablate_positions: Sequence[int] | None = None,
    how: How = "zero",
    reference: Sequence[str] | None = None,
    corpus: str | None = None,
    means: MeanActivations | None = None,
    seed: int = 0,
    samples: int = 1,
    cluster: str | None = None,
    workers: int | None = None,
) -> Ablation:
    """Ablate the named components together and compare ``metric`` with the clean run.

    ``metric`` (metrics.py) defaults to ``logit_diff`` when ``versus`` is given, else ``logit``, read at
    ``position``. ``ablate_positions`` limits the ablation to those token positions (negative: from the
    end). ``how="mean"`` averages over ``reference`` prompts, else ``corpus`` (default builtin), unless
    precomputed ``means`` are given; ``how="resample"`` draws ``samples`` reference prompts with ``seed``.
    ``cluster`` (and ``workers``) runs the corpus pass of mean ablation on Ray.
    """
    chosen = components(model, heads=heads, attn_layers=attn_layers, mlp_layers=mlp_layers, neurons=neurons)
    hooks = sorted({c.hook for c in chosen}, key=model.hooks().index)
    tokens, chosen_metric, clean, source, described = _prepare(
        model,
        prompt,
        hooks,
        how=how,
        metric=metric,
        target=target,
        versus=versus,
        position=position,
        ablate_positions=ablate_positions,
        reference=reference,
        corpus=corpus,
        means=means,
        seed=seed,
        samples=samples,
        cluster=cluster,
        workers=workers,
    )
    ablated = float(_ablated_values(model, tokens, chosen_metric, [chosen], source, rows=samples)[0])
    return Ablation(
        model=model.name,
        prompt=prompt,
        components=[c.label for c in chosen],
        hooks=hooks,
        how=how,
        metric=chosen_metric.describe(model),
        metric_kind=chosen_metric.kind,
        ablate_positions=list(ablate_positions) if ablate_positions is not None else None,
        reference=described,
        clean=clean,
        ablated=ablated,
        difference=ablated - clean,
    )


# ---------------------------------------------------------------------------------------------------
# Sweeps


@dataclass(frozen=True)
class AblationSweep(Result):
    kind = "ablation_sweep"
    json_keys = (
        "model",
        "prompt",
        "over",
        "how",
        "metric",
        "metric_kind",
        "ablate_positions",
        "reference",
        "clean",
        "columns",
        "ablated",
        "effect",
        "ranked",
        "forward_passes",
    )

    model: str
    prompt: str
    over: str  # "heads" or "layers"
    how: str
    metric: str
    metric_kind: str
    ablate_positions: list[int] | None
    reference: str | None
    clean: float
    columns: list[str]  # "H0".."H{n-1}", or "attn", "mlp"
    ablated: list[list[float]]  # [layer][column] metric with that one component ablated
    effect: list[list[float]]  # [layer][column] ablated - clean
    forward_passes: int

    def ranked(self, k: int | None = None) -> list[tuple[str, float]]:
        """(component, effect), most negative effect (largest drop) first."""
        cells = [
            (f"L{layer}.{col}" if self.over == "heads" else f"L{layer} {col}", value)
            for layer, row in enumerate(self.effect)
            for col, value in zip(self.columns, row, strict=True)
        ]
        return sorted(cells, key=lambda cell: cell[1])[:k]

    def figure(self) -> Figure:
        hover = [
            [
                f"L{layer} {col}: ablated {a:.4f}, change {e:+.4f}"
                for col, a, e in zip(self.columns, a_row, e_row, strict=True)
            ]
            for layer, (a_row, e_row) in enumerate(zip(self.ablated, self.effect, strict=True))
        ]
        what = "head" if self.over == "heads" else "attention block and MLP"
        return Figure(
            f"{self.model}: {self.how}-ablating each {what} in turn",
            [
                Heatmap(
                    f"change in {self.metric} when ablated",
                    self.effect,
                    [f"L{layer}" for layer in range(len(self.effect))],
                    self.columns,
                    row_title="layer",
                    col_title="head" if self.over == "heads" else "block",
                    value_label="ablated - clean",
                    cell_text=[[f"{v:+.2f}" for v in row] for row in self.effect],
                    hover=hover,
                    diverging=True,
                )
            ],
            **explanation("ablation_sweep", what=what),
            extra={"clean": f"{self.clean:.4f}", "forward passes": str(self.forward_passes)}
            | ({"reference": self.reference} if self.reference else {}),
        )

    def _json_ranked(self) -> list[dict]:
        return [{"component": c, "effect": e} for c, e in self.ranked(10)]


def ablation_sweep(
    model: Model,
    prompt: str,
    *,
    target: str | None = None,
    versus: str | None = None,
    metric: str | None = None,
    position: int = -1,
    over: Literal["heads", "layers"] = "heads",
    ablate_positions: Sequence[int] | None = None,
    how: How = "zero",
    reference: Sequence[str] | None = None,
    corpus: str | None = None,
    means: MeanActivations | None = None,
    seed: int = 0,
    samples: int = 1,
    batch_size: int = 64,
    cluster: str | None = None,
    workers: int | None = None,
) -> AblationSweep:
    """Ablate every head (``over="heads"``) or every layer's attention and MLP (``"layers"``) alone and
    return the metric's change as a layer x head (or layer x {attn, mlp}) table.

    ``batch_size`` ablations share one forward pass (each row of the batch ablates a different
    component). Options as in ``ablate``; mean values for every hook come from one corpus pass.
    """
    if over == "heads":
        plans = [[Component("head", layer, head)] for layer in range(model.n_layers) for head in range(model.n_heads)]
        columns = [f"H{h}" for h in range(model.n_heads)]
    elif over == "layers":
        plans = [[Component(kind, layer)] for layer in range(model.n_layers) for kind in ("attn", "mlp")]
        columns = ["attn", "mlp"]
    else:
        raise InputError(f"unknown sweep '{over}'; use heads or layers")
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    hooks = sorted({plan[0].hook for plan in plans}, key=model.hooks().index)
    tokens, chosen_metric, clean, source, described = _prepare(
        model,
        prompt,
        hooks,
        how=how,
        metric=metric,
        target=target,
        versus=versus,
        position=position,
        ablate_positions=ablate_positions,
        reference=reference,
        corpus=corpus,
        means=means,
        seed=seed,
        samples=samples,
        cluster=cluster,
        workers=workers,
    )
    values = _ablated_values(model, tokens, chosen_metric, plans, source, rows=batch_size)
    table = values.view(model.n_layers, len(columns))
    return AblationSweep(
        model=model.name,
        prompt=prompt,
        over=over,
        how=how,
        metric=chosen_metric.describe(model),
        metric_kind=chosen_metric.kind,
        ablate_positions=list(ablate_positions) if ablate_positions is not None else None,
        reference=described,
        clean=clean,
        columns=columns,
        ablated=table.tolist(),
        effect=(table - clean).tolist(),
        forward_passes=math.ceil(len(plans) / max(1, batch_size // source.samples)),
    )
