"""The sweep behind activation and attribution patching (``methods.patch.patching``,
``methods.patch.attribution_patching``): check the inputs, run both prompts once caching the site, lay out the
cells (layer x position or layer x head), and run the patched copies in batches, one cell per batch row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from ...errors import InputError
from ...interventions.values import Replace
from ...model.model import Model
from ...model.run import Run
from ...progress import progress
from ..metrics import Metric, make_metric, normalised

STREAM_SITES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")
HEAD_SITES = ("attn.head_out", "attn.z", "attn.q", "attn.k", "attn.v", "attn.pattern")
SITES = STREAM_SITES + HEAD_SITES
Align = Literal["left", "right"] | None
PositionChoice = int | Literal["each", "all"] | None
Prompt = str | torch.Tensor
_TOKENS_PER_PASS = 8192  # default bound on batch rows x tokens in one patched forward pass


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
    _check_site_and_align(model, site, align)
    clean_tokens, corrupted_tokens = _tokens(model, clean, "clean"), _tokens(model, corrupted, "corrupted")
    n_clean, n_corrupted = clean_tokens.shape[1], corrupted_tokens.shape[1]
    if n_clean != n_corrupted and align is None:
        raise InputError(
            f"clean has {n_clean} tokens and corrupted {n_corrupted}: use prompts of the same token length, "
            "or pass align='right' (match the ends) or align='left' (match the starts)"
        )
    if n_clean != n_corrupted and site == "attn.pattern":
        raise InputError("attention patterns of prompts of different lengths do not line up; use equal-length prompts")
    layers = _layers(model, layers)
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
    column_kind, columns, fixed = _columns(model, site, position, n_base, valid)
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


def _check_site_and_align(model: Model, site: str, align: Align) -> None:
    if site not in SITES:
        raise InputError(f"unknown patching site '{site}'; choose one of {', '.join(SITES)}")
    if site == "resid_mid" and model.parallel_residual:
        raise InputError(
            f"{model.name} uses a parallel residual (attention and MLP both read resid_pre), so it has no "
            "resid_mid; patch resid_pre, attn_out or mlp_out instead"
        )
    if align not in (None, "left", "right"):
        raise InputError(f"align must be 'left', 'right' or None, got {align!r}")


def _layers(model: Model, layers: Sequence[int] | None) -> list[int]:
    """The layers to sweep (default: all), checked."""
    chosen = list(range(model.n_layers)) if layers is None else [int(layer) for layer in layers]
    bad = [layer for layer in chosen if not 0 <= layer < model.n_layers]
    if bad or not chosen:
        raise InputError(f"layers must be in 0..{model.n_layers - 1}, got {bad or 'none'}")
    return chosen


def _columns(
    model: Model, site: str, position: PositionChoice, n_base: int, valid: torch.Tensor
) -> tuple[Literal["position", "head"], list[int | None], int | None]:
    """The sweep's columns (positions, or heads) and, for head sites, the one position patched (None = all)."""
    if site not in HEAD_SITES:
        if position in (None, "each"):
            return "position", [p for p in range(n_base) if valid[p]], None
        if position == "all":
            return "position", [None], None
        return "position", [_absolute(position, n_base, valid)], None
    if position == "each":
        raise InputError(
            f"{site} is patched per head at every position (position=None) or at one position "
            "(position=P); sweep positions one at a time"
        )
    fixed = None if position in (None, "all") else _absolute(position, n_base, valid)
    n_heads = model.n_kv_heads if site in ("attn.k", "attn.v") else model.n_heads
    return "head", list(range(n_heads)), fixed


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
