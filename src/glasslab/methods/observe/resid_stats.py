"""Residual-stream statistics: the size of the stream and of each sublayer's write, per layer and position.

Norms make the stream's outliers visible: "massive activations" (Sun et al. 2024), where a few
positions (often BOS) carry a residual vector hundreds of times larger than the rest, and the
sublayers that write them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ...errors import InputError
from ...model.model import Model
from ...views.explanations import explanation
from ...views.figures import Figure, Heatmap
from ...views.result import Result

KINDS = ("resid_pre", "resid_post", "attn_out", "mlp_out")


@dataclass(frozen=True)
class NormOutlier:
    kind: str
    position: int
    token: str
    layer: int  # the layer where its ratio peaks
    norm: float
    ratio: float  # norm / median norm of the same kind and layer over positions, at that layer
    largest_in: list[int]  # the layers where this position has the largest norm of its kind


@dataclass(frozen=True)
class ResidNorms(Result):
    kind = "resid_norms"

    model: str
    prompt: str
    tokens: list[str]
    norms: dict[str, list[list[float]]]  # kind -> [layer][position], L2 norm over d_model
    outliers: list[NormOutlier]  # largest ratios to their layer's median, over every kind

    def figure(self) -> Figure:
        columns = [f"{i} {t!r}" for i, t in enumerate(self.tokens)]
        panels = []
        for kind, grid in self.norms.items():
            panels.append(
                Heatmap(
                    f"norm of {kind} (log10)",
                    [[math.log10(max(v, 1e-12)) for v in row] for row in grid],
                    [f"L{layer}" for layer in range(len(grid))],
                    columns,
                    row_title="layer",
                    col_title="position",
                    value_label="log10 of the L2 norm",
                    cell_text=[[_short(v) for v in row] for row in grid],
                    hover=[
                        [f"L{layer} {kind} at {columns[p]}: norm {v:.4g}" for p, v in enumerate(row)]
                        for layer, row in enumerate(grid)
                    ],
                )
            )
        extra = {}
        if self.outliers:
            o = self.outliers[0]
            extra["largest outlier"] = f"{o.kind} at {o.position} {o.token!r}: {o.ratio:.1f}x the median (L{o.layer})"
        return Figure(
            f"{self.model}: residual-stream norms",
            panels,
            **explanation("resid_norms"),
            extra=extra,
        )


def _norm(activation: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(activation[0].float(), dim=-1)


def _short(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.2g}"


def resid_norms(model: Model, prompt: str, *, top: int = 10) -> ResidNorms:
    """L2 norms of ``resid_pre``, ``resid_post``, ``attn_out`` and ``mlp_out`` at every layer and position,
    and the ``top`` largest outliers: (kind, position) pairs ranked by their peak ratio to the layer's median."""
    if not 1 <= top <= 1000:
        raise InputError(f"top must be in 1..1000, got {top}")
    tokens = model.to_tokens(prompt)
    run = model.run(tokens, cache=[f"blocks.*.{kind}" for kind in KINDS], logits=False)
    strs = [model.tokenizer.decode([int(t)]) for t in tokens[0]]
    norms: dict[str, torch.Tensor] = {
        kind: torch.stack([_norm(run.cache[f"blocks.{layer}.{kind}"]) for layer in range(model.n_layers)]).cpu()
        for kind in KINDS
    }
    candidates = []
    for kind, grid in norms.items():
        ratio = grid / grid.median(dim=1, keepdim=True).values.clamp_min(1e-12)  # [layer, position]
        largest = grid.argmax(dim=1)
        peak_ratio, peak_layer = ratio.max(dim=0)
        for position in range(grid.shape[1]):
            layer = int(peak_layer[position])
            candidates.append(
                NormOutlier(
                    kind,
                    position,
                    strs[position],
                    layer,
                    float(grid[layer, position]),
                    float(peak_ratio[position]),
                    [int(i) for i in torch.nonzero(largest == position).flatten()],
                )
            )
    candidates.sort(key=lambda o: -o.ratio)
    return ResidNorms(
        model=model.name,
        prompt=prompt,
        tokens=strs,
        norms={kind: grid.tolist() for kind, grid in norms.items()},
        outliers=candidates[:top],
    )
