"""What the model predicts next: top-k tokens with probabilities and logits, entropy, a target's rank."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import InputError
from ...model.model import Model
from ...model.run import Run
from ...views.explanations import explanation
from ...views.figures import Bars, Figure
from ...views.result import Result


@dataclass(frozen=True)
class TokenScore:
    token: str
    token_id: int
    probability: float
    logit: float
    rank: int  # 1 = the model's top choice


@dataclass(frozen=True)
class TokenLoss:
    position: int
    token: str
    loss: float  # -log p(token | the tokens before it), in nats


@dataclass(frozen=True)
class Prediction(Result):
    kind = "prediction"
    json_keys = (
        "model",
        "prompt",
        "position",
        "context_token",
        "entropy_nats",
        "top",
        "target",
        "token_losses",
        "mean_loss",
    )

    model: str
    prompt: str
    position: int  # absolute position whose next token is predicted
    context_token: str  # the token at that position
    top: list[TokenScore]
    entropy_nats: float
    target: TokenScore | None
    token_losses: list[TokenLoss]  # every token after the first (empty when the logits were not computed)
    mean_loss: float | None

    def figure(self) -> Figure:
        panels = [
            Bars(
                "next-token probabilities",
                [repr(s.token) for s in self.top],
                [s.probability for s in self.top],
                "probability",
                hover=[f"{s.token!r}: p={s.probability:.4f}, logit={s.logit:.3f}, rank {s.rank}" for s in self.top],
            ),
        ]
        if self.token_losses:
            panels.append(
                Bars(
                    "loss of each token given the ones before it",
                    [f"{t.position} {t.token!r}" for t in self.token_losses],
                    [t.loss for t in self.token_losses],
                    "nats (higher = more surprising)",
                )
            )
        return Figure(
            f"{self.model}: what comes after {self.context_token!r}",
            panels,
            **explanation("prediction"),
            extra={"entropy": f"{self.entropy_nats:.3f} nats"}
            | ({"mean loss": f"{self.mean_loss:.3f} nats"} if self.mean_loss is not None else {}),
        )


def predict(
    model: Model, prompt: str, *, k: int = 10, position: int = -1, target: str | None = None, run: Run | None = None
) -> Prediction:
    """Top-``k`` next tokens at ``position`` (default: after the last token), ``target``'s standing, and
    the loss of every token of the prompt given the tokens before it.

    ``target`` is text; its first token is scored (include the leading space, e.g. ``" Paris"``).
    ``run``: a run of ``prompt`` to reuse (one that skipped the logits but cached ``ln_final`` is
    decoded at ``position`` only, and then has no per-token losses).
    """
    if not 1 <= k <= 1000:
        raise InputError(f"k must be in 1..1000, got {k}")
    run = run if run is not None else model.run(prompt)
    n = run.tokens.shape[1]
    if not -n <= position < n:
        raise InputError(
            f"position {position} is out of range for a prompt of {n} tokens (valid: 0..{n - 1} or -{n}..-1)"
        )
    absolute = position % n
    logits = model.logits_at(run, [absolute])[0].float()
    log_probs = torch.log_softmax(logits, dim=-1)
    probs = log_probs.exp()
    entropy = float(-(probs * log_probs).sum())
    top = torch.topk(logits, min(k, logits.shape[-1]))  # a vocabulary smaller than k: every token

    def score(token_id: int, rank: int | None = None) -> TokenScore:
        if rank is None:
            rank = int((logits > logits[token_id]).sum()) + 1
        return TokenScore(
            model.tokenizer.decode([token_id]), token_id, float(probs[token_id]), float(logits[token_id]), rank
        )

    target_score = None
    if target is not None:
        target_score = score(model.token_id(target, "target"))
    losses: list[float] = []
    next_ids = run.tokens[0, 1:]
    if run.logits is not None:
        all_log_probs = torch.log_softmax(run.logits[0, :-1].float(), dim=-1)
        losses = (-all_log_probs.gather(1, next_ids[:, None].to(all_log_probs.device))[:, 0]).tolist()
    token_losses = [
        TokenLoss(i + 1, model.tokenizer.decode([int(t)]), loss)
        for i, (t, loss) in enumerate(zip(next_ids.tolist(), losses, strict=False))
    ]
    return Prediction(
        model=model.name,
        prompt=prompt,
        position=absolute,
        context_token=model.tokenizer.decode([int(run.tokens[0, absolute])]),
        top=[score(int(i), r + 1) for r, i in enumerate(top.indices)],
        entropy_nats=entropy,
        target=target_score,
        token_losses=token_losses,
        mean_loss=sum(losses) / len(losses) if losses else None,
    )
