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

import torch

from ..errors import InputError
from ..interventions.values import Replace
from ..model.model import Model
from ..model.run import Run
from ..progress import progress
from ..views.explanations import explanation, note
from ..views.figures import Figure, Heatmap
from ..views.result import Result
from .metrics import Metric, make_metric, normalised

STREAM_SITES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")
HEAD_SITES = ("attn.head_out", "attn.z", "attn.q", "attn.k", "attn.v", "attn.pattern")
SITES = STREAM_SITES + HEAD_SITES
Align = Literal["left", "right"] | None
PositionChoice = int | Literal["each", "all"] | None
Prompt = str | torch.Tensor
_TOKENS_PER_PASS = 8192  # default bound on batch rows x tokens in one patched forward pass


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


@dataclass
class Sweep:
    """Everything a sweep needs, prepared once (shared by activation and attribution patching)."""

    model: Model
    site: str
    mode: Literal["denoising", "noising"]
    metric: Metric
    clean_value: float
    corrupted_value: float
    clean_tokens: torch.Tensor  # [1, n]
    corrupted_tokens: torch.Tensor
    base: Run  # the run that receives patches (corrupted for denoising), with the site cached
    source: Run  # the run patches come from
    shift: int  # source position = patched position + shift
    align: str | None
    layers: list[int]
    column_kind: Literal["position", "head"]
    columns: list[int | None]
    position: int | None  # head sites: the one position (None = all)
    valid: torch.Tensor  # [n_base] bool: patched positions that have a counterpart in the source

    @property
    def n_base(self) -> int:
        return int(self.base.tokens.shape[1])

    @property
    def base_value(self) -> float:
        return self.corrupted_value if self.mode == "denoising" else self.clean_value

    def hook(self, layer: int) -> str:
        return f"blocks.{layer}.{self.site}"

    def aligned_source(self, layer: int) -> torch.Tensor:
        """The source's activation at ``layer``, moved to the patched run's positions (shape of the base)."""
        act = self.source.cache[self.hook(layer)]
        n_source = int(self.source.tokens.shape[1])
        if self.shift == 0 and n_source == self.n_base:
            return act
        index = (torch.arange(self.n_base) + self.shift).clamp(0, n_source - 1).to(act.device)
        return act.index_select(1, index)

    def cell_mask(self, column: int | None) -> torch.Tensor:
        """Bool mask of one cell, broadcastable to the site's activation without its batch dimension."""
        if self.column_kind == "position":
            positions = self.valid.clone() if column is None else torch.zeros(self.n_base, dtype=torch.bool)
            if column is not None:
                positions[column] = True
            return positions[:, None]
        positions = self.valid.clone()
        if self.position is not None:
            positions = torch.zeros(self.n_base, dtype=torch.bool)
            positions[self.position] = True
        heads = torch.zeros(self.n_heads, dtype=torch.bool)
        heads[column] = True
        if self.site == "attn.pattern":  # [head, query, key]
            return heads[:, None, None] & positions[None, :, None]
        return positions[:, None, None] & heads[None, :, None]  # [pos, head, d]

    @property
    def n_heads(self) -> int:
        return self.model.n_kv_heads if self.site in ("attn.k", "attn.v") else self.model.n_heads

    @property
    def cells(self) -> list[tuple[int, int | None]]:
        return [(layer, column) for layer in self.layers for column in self.columns]

    def table(self, values: torch.Tensor) -> tuple[list[list[float]], list[list[float]]]:
        """[cells] raw metric values -> (raw, normalised) tables [layer][column]."""
        grid = values.reshape(len(self.layers), len(self.columns)).double()
        return grid.tolist(), normalised(grid, self.clean_value, self.corrupted_value).tolist()

    def result_fields(self, raw: list[list[float]], norm: list[list[float]], forward_passes: int) -> dict:
        model = self.model
        return {
            "model": model.name,
            "site": self.site,
            "mode": self.mode,
            "metric": self.metric.describe(model),
            "metric_kind": self.metric.kind,
            "clean_value": self.clean_value,
            "corrupted_value": self.corrupted_value,
            "clean_tokens": model.to_str_tokens(self.clean_tokens[0]),
            "corrupted_tokens": model.to_str_tokens(self.corrupted_tokens[0]),
            "align": self.align,
            "layers": self.layers,
            "column_kind": self.column_kind,
            "columns": self.columns,
            "position": self.position,
            "raw": raw,
            "normalised": norm,
            "forward_passes": forward_passes,
        }


def prepare_sweep(
    model: Model,
    clean: Prompt,
    corrupted: Prompt,
    *,
    target: str | int | None,
    versus: str | int | None,
    metric: str | Metric | None,
    site: str,
    position: PositionChoice,
    layers: Sequence[int] | None,
    noising: bool,
    align: Align,
) -> Sweep:
    """Check the inputs, run both prompts once (caching the site) and lay out the cells."""
    if site not in SITES:
        raise InputError(f"unknown patching site '{site}'; choose one of {', '.join(SITES)}")
    if site == "resid_mid" and model.parallel_residual:
        raise InputError(
            f"{model.name} uses a parallel residual (attention and MLP both read resid_pre), so it has no "
            "resid_mid; patch resid_pre, attn_out or mlp_out instead"
        )
    if align not in (None, "left", "right"):
        raise InputError(f"align must be 'left', 'right' or None, got {align!r}")
    clean_tokens, corrupted_tokens = _tokens(model, clean, "clean"), _tokens(model, corrupted, "corrupted")
    n_clean, n_corrupted = clean_tokens.shape[1], corrupted_tokens.shape[1]
    if n_clean != n_corrupted and align is None:
        raise InputError(
            f"clean has {n_clean} tokens and corrupted {n_corrupted}: use prompts of the same token length, "
            "or pass align='right' (match the ends) or align='left' (match the starts)"
        )
    if n_clean != n_corrupted and site == "attn.pattern":
        raise InputError("attention patterns of prompts of different lengths do not line up; use equal-length prompts")
    layers = list(range(model.n_layers)) if layers is None else [int(layer) for layer in layers]
    bad = [layer for layer in layers if not 0 <= layer < model.n_layers]
    if bad or not layers:
        raise InputError(f"layers must be in 0..{model.n_layers - 1}, got {bad or 'none'}")
    metric_obj = _metric(model, metric, target, versus)
    hooks = [f"blocks.{layer}.{site}" for layer in layers]
    clean_run = model.run(clean_tokens, cache=[*hooks, "ln_final"], logits=False)
    corrupted_run = model.run(corrupted_tokens, cache=[*hooks, "ln_final"], logits=False)
    if metric_obj.kind == "kl":
        metric_obj = metric_obj.with_reference(model, clean_run)
    clean_value = float(metric_obj(model, clean_run)[0])
    corrupted_value = float(metric_obj(model, corrupted_run)[0])
    normalised(0.0, clean_value, corrupted_value)  # raises when the prompts give the same value
    mode: Literal["denoising", "noising"] = "noising" if noising else "denoising"
    base, source = (clean_run, corrupted_run) if noising else (corrupted_run, clean_run)
    n_base, n_source = base.tokens.shape[1], source.tokens.shape[1]
    shift = n_source - n_base if align == "right" else 0
    valid = (torch.arange(n_base) + shift >= 0) & (torch.arange(n_base) + shift < n_source)
    column_kind: Literal["position", "head"] = "head" if site in HEAD_SITES else "position"
    fixed: int | None = None
    if column_kind == "position":
        if position in (None, "each"):
            columns: list[int | None] = [p for p in range(n_base) if valid[p]]
        elif position == "all":
            columns = [None]
        else:
            columns = [_absolute(position, n_base, valid)]
    else:
        if position == "each":
            raise InputError(
                f"{site} is patched per head at every position (position=None) or at one position "
                "(position=P); sweep positions one at a time"
            )
        fixed = None if position in (None, "all") else _absolute(position, n_base, valid)
        n_heads = model.n_kv_heads if site in ("attn.k", "attn.v") else model.n_heads
        columns = list(range(n_heads))
    return Sweep(
        model,
        site,
        mode,
        metric_obj,
        clean_value,
        corrupted_value,
        clean_tokens,
        corrupted_tokens,
        base,
        source,
        shift,
        align,
        layers,
        column_kind,
        columns,
        fixed,
        valid,
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


def run_sweep(sweep: Sweep, batch_size: int | None) -> tuple[torch.Tensor, int]:
    """[cells] metric of every patched run, at most ``batch_size`` runs per forward pass; and the pass count."""
    model, cells = sweep.model, sweep.cells
    limit = batch_size or max(1, min(256, _TOKENS_PER_PASS // sweep.n_base))
    passes = -(-len(cells) // limit)
    batch_size = -(-len(cells) // passes)  # equal chunks: 270 cells at 256 a pass run as 2 x 135
    masks = {column: sweep.cell_mask(column) for column in sweep.columns}
    sources = {layer: sweep.aligned_source(layer) for layer in sweep.layers}
    tokens = sweep.base.tokens
    values = []
    starts = range(0, len(cells), batch_size)
    for start in progress(starts, total=len(starts), description=f"patching {sweep.site}", unit="batch"):
        chunk = cells[start : start + batch_size]
        interventions = []
        for layer in dict.fromkeys(layer for layer, _ in chunk):
            rows = [masks[column] if cell_layer == layer else None for cell_layer, column in chunk]
            template = next(m for m in rows if m is not None)
            mask = torch.stack([torch.zeros_like(template) if m is None else m for m in rows])
            interventions.append(Replace(sweep.hook(layer), fn=_patcher(mask, sources[layer])))
        run = model.run(tokens.expand(len(chunk), -1), cache=["ln_final"], logits=False, interventions=interventions)
        values.append(sweep.metric(model, run))
    return torch.cat(values), len(starts)


def _patcher(mask: torch.Tensor, source: torch.Tensor):
    """Replace's function: row i takes the source's values where its mask is set."""

    def fn(act: torch.Tensor) -> torch.Tensor:
        return torch.where(mask.to(act.device), source.to(device=act.device, dtype=act.dtype), act)

    return fn


def _tokens(model: Model, prompt: Prompt, what: str) -> torch.Tensor:
    if isinstance(prompt, torch.Tensor):
        ids = prompt.reshape(1, -1) if prompt.dim() == 1 else prompt
        if ids.shape[0] != 1:
            raise InputError(f"the {what} prompt must be one prompt, got a batch of {ids.shape[0]}")
        return ids.long()
    if not isinstance(prompt, str):
        raise InputError(f"the {what} prompt must be text or a [1, pos] tensor of token ids")
    return model.to_tokens(prompt)


def _metric(model: Model, metric: str | Metric | None, target, versus) -> Metric:
    if isinstance(metric, Metric):
        return metric
    if (metric or "logit") in ("logit", "logit_diff", "prob") and target is None:
        kind = metric or "logit"
        raise InputError(f"patching with the {kind} metric needs target=<the clean answer>, e.g. target=' Mary'")
    return make_metric(model, metric, target=target, versus=versus)


def _absolute(position: int, n: int, valid: torch.Tensor) -> int:
    if not isinstance(position, int) or not -n <= position < n:
        raise InputError(
            f"position {position} is out of range for a prompt of {n} tokens (valid: 0..{n - 1} or -{n}..-1)"
        )
    absolute = position % n
    if not valid[absolute]:
        raise InputError(f"position {position} has no counterpart in the other prompt with this alignment")
    return absolute
