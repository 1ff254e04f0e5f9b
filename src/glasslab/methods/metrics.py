"""Metrics shared by the causal methods: what a patch, ablation or steer is measured by.

A ``Metric`` turns a run into one number per prompt. It reads only what it needs: runs made with
``logits=False`` and ``ln_final`` cached are decoded at the metric's positions only, and logit metrics
use just the target columns of the unembedding, so a sweep of hundreds of patched runs never holds
[batch, pos, vocab] logits.

Kinds:
- ``logit``: the target token's logit at ``position``.
- ``logit_diff``: target's logit minus ``versus``'s (the usual IOI-style metric).
- ``prob``: the target's probability at ``position``.
- ``loss``: mean cross-entropy of the prompt's own tokens over positions ``span = (start, end)`` (each
  token predicted from the ones before it); default: every token after the first.
- ``kl``: KL(reference || run) at ``position``, in nats, where the reference is the clean run
  (``metric.with_reference(clean_run)``).

``position=-1`` is each prompt's last real token, whatever its padding.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch

from ..errors import InputError
from ..model.model import Model
from ..model.run import Run

Kind = Literal["logit", "logit_diff", "prob", "loss", "kl"]
KINDS: tuple[str, ...] = ("logit", "logit_diff", "prob", "loss", "kl")
_CHUNK = 64  # rows decoded over the full vocabulary at once


@dataclass(frozen=True)
class Metric:
    kind: Kind
    target_id: int | None = None
    versus_id: int | None = None
    position: int = -1
    span: tuple[int, int] | None = None
    reference: torch.Tensor | None = None  # [1 or batch, vocab] clean log-probs, for "kl"

    def describe(self, model: Model) -> str:
        token = (lambda i: repr(model.tokenizer.decode([i]))) if self.target_id is not None else None
        if self.kind == "logit":
            return f"logit of {token(self.target_id)}"
        if self.kind == "logit_diff":
            return f"logit of {token(self.target_id)} minus logit of {token(self.versus_id)}"
        if self.kind == "prob":
            return f"probability of {token(self.target_id)}"
        if self.kind == "loss":
            return "mean loss over " + (f"positions {self.span[0]}..{self.span[1] - 1}" if self.span else "the text")
        return "KL divergence from the clean run's prediction (nats)"

    def with_reference(self, model: Model, clean: Run) -> Metric:
        """A KL metric bound to the clean run's next-token distribution."""
        rows = _positions(clean, self.position)
        logits = _full_logits(model, clean, rows)
        return replace(self, reference=torch.log_softmax(logits.float(), dim=-1))

    def __call__(self, model: Model, run: Run) -> torch.Tensor:
        """[batch] metric values (float32, CPU)."""
        if self.kind in ("logit", "logit_diff"):
            ids = [self.target_id] + ([self.versus_id] if self.kind == "logit_diff" else [])
            values = _selected_logits(model, run, _positions(run, self.position), ids)
            return (values[:, 0] - values[:, 1] if self.kind == "logit_diff" else values[:, 0]).cpu()
        if self.kind == "prob":
            logits = _full_logits(model, run, _positions(run, self.position))
            return torch.softmax(logits.float(), dim=-1)[:, self.target_id].cpu()
        if self.kind == "kl":
            if self.reference is None:
                raise InputError("the kl metric needs the clean run: use metric.with_reference(model, clean_run)")
            log_probs = torch.log_softmax(_full_logits(model, run, _positions(run, self.position)).float(), dim=-1)
            return kl_divergence(self.reference.to(log_probs.device), log_probs).cpu()
        return _span_loss(model, run, self.span).cpu()


def make_metric(
    model: Model,
    kind: str | None,
    *,
    target: str | int | None = None,
    versus: str | int | None = None,
    position: int = -1,
    span: tuple[int, int] | None = None,
) -> Metric:
    """Build a metric from user input; token texts use their first token (include the leading space).

    ``kind=None`` picks ``logit_diff`` when ``versus`` is given, else ``logit``.
    """
    kind = kind or ("logit_diff" if versus is not None else "logit")
    if kind not in KINDS:
        raise InputError(f"unknown metric '{kind}'; choose one of {', '.join(KINDS)}")
    target_id = None if target is None else model.token_id(target, "target")
    versus_id = None if versus is None else model.token_id(versus, "versus token")
    if kind in ("logit", "logit_diff", "prob") and target_id is None:
        raise InputError(f"the {kind} metric needs a target token, e.g. target=' Paris'")
    if kind == "logit_diff" and versus_id is None:
        raise InputError("the logit_diff metric needs a versus token, e.g. versus=' London'")
    if span is not None and not (1 <= span[0] < span[1]):
        raise InputError(f"span must be (start, end) with 1 <= start < end, got {span}")
    return Metric(kind, target_id, versus_id, position, span)  # type: ignore[arg-type]


def kl_divergence(reference_log_probs: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
    """KL(reference || other) per row, in nats (clamped at 0 against float rounding)."""
    return (reference_log_probs.exp() * (reference_log_probs - log_probs)).sum(-1).clamp_min(0.0)


def normalised(value: torch.Tensor | float, clean: float, corrupted: float) -> torch.Tensor | float:
    """0 at the corrupted run's metric, 1 at the clean run's."""
    if abs(clean - corrupted) < 1e-6:
        raise InputError(
            "the clean and corrupted prompts give the same metric value, so there is nothing to recover; "
            "choose prompts (or a metric) that differ"
        )
    return (value - corrupted) / (clean - corrupted)


def _positions(run: Run, position: int) -> torch.Tensor:
    """[batch] absolute position per prompt (negative positions count from each prompt's end)."""
    lengths = run.prompt_lengths
    absolute = lengths + position if position < 0 else torch.full_like(lengths, position)
    if (absolute < 0).any() or (absolute >= lengths).any():
        raise InputError(f"metric position {position} is outside a prompt of {int(lengths.min())} tokens")
    return absolute


def _final_rows(run: Run, positions: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    rows = torch.arange(positions.shape[0])
    if run.logits is not None:
        return run.logits[rows, positions.to(run.logits.device)], None
    if "ln_final" not in run.cache:
        raise InputError("the metric needs the run's logits or its cached ln_final")
    normed = run.cache["ln_final"]
    return None, normed[rows.to(normed.device), positions.to(normed.device)]


def _softcap(model: Model, logits: torch.Tensor) -> torch.Tensor:
    cap = getattr(model.config, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


def _selected_logits(model: Model, run: Run, positions: torch.Tensor, ids: list[int]) -> torch.Tensor:
    """[batch, len(ids)] logits of chosen tokens, from the unembedding's matching rows only."""
    logits, normed = _final_rows(run, positions)
    if logits is not None:
        return logits[:, ids].float()
    # W_U's columns, gathered as contiguous rows of its [vocab, d_model] storage; differentiable when the run
    # kept its graph (grad=True)
    values = normed @ model.weights.W_U().T[ids].T
    bias = model.weights.get("b_U")
    if bias is not None:
        values = values + bias[ids]
    return _softcap(model, values).float()


def _full_logits(model: Model, run: Run, positions: torch.Tensor) -> torch.Tensor:
    """[batch, vocab] logits at one position per prompt, decoded in chunks."""
    logits, normed = _final_rows(run, positions)
    if logits is not None:
        return logits
    unembed = model.module(model.arch.unembed)
    return torch.cat([_softcap(model, unembed(normed[i : i + _CHUNK])) for i in range(0, normed.shape[0], _CHUNK)])


def _span_loss(model: Model, run: Run, span: tuple[int, int] | None) -> torch.Tensor:
    """[batch] mean next-token loss over the span's tokens (within each prompt's real length)."""
    start, end = span if span is not None else (1, int(run.tokens.shape[1]))
    losses = []
    for row in range(run.tokens.shape[0]):
        stop = min(end, int(run.prompt_lengths[row]))
        if stop <= start:
            raise InputError(f"the loss span {start}..{end - 1} is outside prompt {row} ({stop} tokens)")
        predicting = torch.arange(start - 1, stop - 1)
        if run.logits is not None:
            logits = run.logits[row, predicting]
        else:
            normed = run.cache["ln_final"][row, predicting.to(run.cache["ln_final"].device)]
            logits = _softcap(model, model.module(model.arch.unembed)(normed))
        targets = run.tokens[row, start:stop].to(logits.device)
        losses.append(torch.nn.functional.cross_entropy(logits.float(), targets))
    return torch.stack(losses)
