"""What an input attribution explains: one number read at the prompt's last position.

``f`` is the target token's logit (default), its log-probability or probability, or the logit
difference target - versus. Logit, logit difference and probability are the shared causal metrics of
``methods/metrics.py``; the log-probability is computed here from the last position's logits with a
log-softmax (stable where the probability underflows). Every kind reads only the cached ``ln_final``
row of the last position, so batched evaluations never hold [batch, pos, vocab] logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ...errors import InputError
from ...model.model import Model
from ...model.run import Run
from ..metrics import Metric

TargetKind = Literal["logit", "logprob", "prob", "logit_diff"]
TARGET_KINDS: tuple[str, ...] = ("logit", "logprob", "prob", "logit_diff")


@dataclass(frozen=True)
class Target:
    kind: TargetKind
    token_id: int
    versus_id: int | None = None

    def __call__(self, model: Model, run: Run) -> torch.Tensor:
        """[batch] float32 values; differentiable when the run kept its graph."""
        if self.kind == "logprob":
            return torch.log_softmax(last_logits(model, run).float(), dim=-1)[:, self.token_id].cpu()
        return Metric(self.kind, self.token_id, self.versus_id, position=-1)(model, run)

    def describe(self, model: Model) -> str:
        token = repr(model.tokenizer.decode([self.token_id]))
        if self.kind == "logit_diff":
            return f"logit of {token} minus logit of {model.tokenizer.decode([self.versus_id])!r}"
        return {"logit": "logit", "logprob": "log-probability", "prob": "probability"}[self.kind] + f" of {token}"

    def to_dict(self, model: Model) -> dict:
        return {
            "kind": self.kind,
            "token": model.tokenizer.decode([self.token_id]),
            "token_id": self.token_id,
            "versus": None if self.versus_id is None else model.tokenizer.decode([self.versus_id]),
            "versus_id": self.versus_id,
            "description": self.describe(model),
        }


def make_target(
    model: Model, run: Run, *, target: str | int | None, versus: str | int | None, kind: str | None
) -> Target:
    """Resolve user input; ``target=None`` is the model's top prediction after the prompt (from ``run``)."""
    kind = kind or ("logit_diff" if versus is not None else "logit")
    if kind not in TARGET_KINDS:
        raise InputError(f"unknown target kind '{kind}'; choose one of {', '.join(TARGET_KINDS)}")
    if kind == "logit_diff" and versus is None:
        raise InputError("a logit difference needs a versus token, e.g. versus=' London'")
    if kind != "logit_diff" and versus is not None:
        raise InputError(f"versus= only applies to the logit_diff kind, not to '{kind}'")
    if target is None:
        with torch.no_grad():
            token_id = int(last_logits(model, run)[0].argmax())
    else:
        token_id = model.token_id(target, "target")
    versus_id = None if versus is None else model.token_id(versus, "versus token")
    if versus_id is not None and versus_id == token_id:
        raise InputError("target and versus are the same token, so their logit difference is always 0")
    return Target(kind, token_id, versus_id)  # type: ignore[arg-type]


def last_logits(model: Model, run: Run) -> torch.Tensor:
    """[batch, vocab] logits at the last position, from the run's logits or its cached ``ln_final``."""
    if run.logits is not None:
        return run.logits[:, -1]
    normed = run.cache["ln_final"][:, -1]
    logits = model.module(model.arch.unembed)(normed)
    cap = getattr(model.config, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits
