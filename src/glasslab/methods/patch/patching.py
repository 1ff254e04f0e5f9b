"""Activation patching (Meng et al. 2022; Wang et al. 2022; Heimersheim & Nanda 2024).

Two prompts that differ in one detail, a *clean* one (the model does the task) and a *corrupted* one
(it does not), and a metric (e.g. logit of the right answer minus the wrong one). Patching copies one
activation from one run into the other and reads the metric again:

- denoising (the default): the clean activation goes into the corrupted run. A cell that brings the
  metric back to the clean value carries information the model needs ("sufficient" given the rest).
- noising: the corrupted activation goes into the clean run. A cell that breaks the metric is needed
  ("necessary" given the rest).

Both report the raw metric and a normalised one, ``(value - corrupted) / (clean - corrupted)``: in
denoising 0 = the corrupted run (patch did nothing) and 1 = the clean run (full recovery); in noising
the same formula gives 1 = the clean run (patch did nothing) and 0 = as broken as the corrupted run.

Sites: ``resid_pre|resid_mid|resid_post|attn_out|mlp_out`` (cells = layer x position, or layer with
every position at once) and the per-head ``attn.head_out|attn.z|attn.q|attn.k|attn.v|attn.pattern``
(cells = layer x head, at every position or one; ``attn.k``/``attn.v`` have ``n_kv_heads`` heads).
``attn.head_out`` edits keep a post-norm's scale frozen (docs/hooks.md); ``attn.z`` lets it react, and is
what TransformerLens calls patching a head's output.

Sweeps are batched: each forward pass carries ``batch_size`` patched copies of the run, row ``i``
patched at cell ``i`` only, so a layer x position sweep costs (cells / batch_size) forward passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ...errors import InputError
from ...model.model import Model
from ...views.explanations import explanation, note
from ...views.figures import Figure, Heatmap
from ...views.result import Result
from ..metrics import Metric
from .patching_sweep import (  # also re-exported: defined here before the sweep got its own module
    HEAD_SITES,  # noqa: F401
    SITES,  # noqa: F401
    STREAM_SITES,  # noqa: F401
    Align,
    PositionChoice,
    Prompt,
    Sweep,  # noqa: F401
    prepare_sweep,
    run_sweep,
)


@dataclass(frozen=True)
class PatchTable(Result):
    """A sweep's cells as a table: rows are layers, columns positions or heads (shared by both patchings)."""

    json_keys = (
        "model",
        "site",
        "mode",
        "metric",
        "metric_kind",
        "clean_value",
        "corrupted_value",
        "clean_tokens",
        "corrupted_tokens",
        "align",
        "layers",
        "column_kind",
        "columns",
        "position",
        "raw",
        "normalised",
        "forward_passes",
        "cells",
    )

    model: str
    site: str
    mode: Literal["denoising", "noising"]
    metric: str  # in words
    metric_kind: str
    clean_value: float
    corrupted_value: float
    clean_tokens: list[str]
    corrupted_tokens: list[str]
    align: str | None
    layers: list[int]
    column_kind: Literal["position", "head"]
    columns: list[int | None]  # positions (None = every position at once) or heads
    position: int | None  # for head sites: the one patched position (None = every position)
    raw: list[list[float]]  # [layer][column] metric after the patch
    normalised: list[list[float]]  # [layer][column], 0 = corrupted, 1 = clean
    forward_passes: int

    @property
    def patched_tokens(self) -> list[str]:
        """The tokens of the run that receives the patches (positions refer to it)."""
        return self.corrupted_tokens if self.mode == "denoising" else self.clean_tokens

    @property
    def cells(self) -> list[dict]:
        """One record per cell: {site, layer, head, position, raw, normalised} (head/position None = all)."""
        records = []
        for i, layer in enumerate(self.layers):
            for j, column in enumerate(self.columns):
                head = column if self.column_kind == "head" else None
                position = column if self.column_kind == "position" else self.position
                records.append(
                    {
                        "site": self.site,
                        "layer": layer,
                        "head": head,
                        "position": position,
                        "raw": self.raw[i][j],
                        "normalised": self.normalised[i][j],
                    }
                )
        return records

    def column_labels(self) -> list[str]:
        if self.column_kind == "head":
            return [f"H{h}" for h in self.columns]
        tokens = self.patched_tokens
        return ["all" if p is None else f"{p} {tokens[p]!r}" for p in self.columns]

    def heatmap(self, title: str) -> Heatmap:
        return Heatmap(
            title,
            self.normalised,
            [f"L{layer}" for layer in self.layers],
            self.column_labels(),
            row_title="layer",
            col_title=self.column_kind,
            value_label="normalised metric (0 = corrupted, 1 = clean)",
            cell_text=[[f"{v:.2f}" for v in row] for row in self.normalised],
            hover=[
                [f"{self.metric} = {r:.4f} (normalised {n:.3f})" for r, n in zip(raw, norm, strict=True)]
                for raw, norm in zip(self.raw, self.normalised, strict=True)
            ],
            diverging=True,
        )

    def where(self) -> str:
        """The site in words, for titles."""
        if self.column_kind == "position":
            return self.site
        if self.position is None:
            return f"{self.site} at every position"
        return f"{self.site} at position {self.position} {self.patched_tokens[self.position]!r}"

    def facts(self) -> dict[str, str]:
        return {
            "metric": self.metric,
            "clean": f"{self.clean_value:.4f}",
            "corrupted": f"{self.corrupted_value:.4f}",
            "mode": self.mode,
        }


@dataclass(frozen=True)
class ActivationPatching(PatchTable):
    """The metric after patching each cell (layer x position or layer x head)."""

    kind = "activation_patching"

    def figure(self) -> Figure:
        source, into = ("clean", "corrupted") if self.mode == "denoising" else ("corrupted", "clean")
        return Figure(
            f"{self.model}: activation patching of {self.where()} ({self.mode})",
            [self.heatmap(f"{self.metric}, normalised, after patching each cell")],
            **explanation(
                "activation_patching",
                into=into,
                site=self.site,
                column=self.column_kind,
                source=source,
                metric=self.metric,
                mode=note("activation_patching", self.mode),
            ),
            extra=self.facts() | {"forward passes": str(self.forward_passes)},
        )


def activation_patching(
    model: Model,
    clean: Prompt,
    corrupted: Prompt,
    *,
    target: str | int | None = None,
    versus: str | int | None = None,
    metric: str | Metric | None = None,
    site: str = "resid_pre",
    position: PositionChoice = None,
    layers: Sequence[int] | None = None,
    noising: bool = False,
    align: Align = None,
    batch_size: int | None = None,
) -> ActivationPatching:
    """Patch ``site`` cell by cell between ``clean`` and ``corrupted`` and score each patched run.

    ``metric``: a kind (``logit_diff`` when ``versus`` is given, else ``logit``; also ``prob``, ``loss``,
    ``kl``) or a ``Metric``. ``position``: for layer x position sites, ``None``/``"each"`` sweeps every
    position, ``"all"`` patches every position at once (one cell per layer), an int only that position;
    for per-head sites, ``None`` patches each head at every position, an int at that position only.
    Positions refer to the patched run (the corrupted prompt when denoising). Prompts of different token
    lengths need ``align="right"`` (ends matched) or ``"left"``. Up to ``batch_size`` patched runs share
    each forward pass (default: about 8192 tokens per pass; lower it to bound memory).
    """
    if batch_size is not None and batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    sweep = prepare_sweep(
        model,
        clean,
        corrupted,
        target=target,
        versus=versus,
        metric=metric,
        site=site,
        position=position,
        layers=layers,
        noising=noising,
        align=align,
    )
    values, passes = run_sweep(sweep, batch_size)
    raw, norm = sweep.table(values)
    return ActivationPatching(**sweep.result_fields(raw, norm, passes))
