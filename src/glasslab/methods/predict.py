"""What the model predicts next: top-k tokens with probabilities and logits, entropy, a target's rank."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import InputError
from ..model.model import Model
from ..views.html import html_table


@dataclass(frozen=True)
class TokenScore:
    token: str
    token_id: int
    probability: float
    logit: float
    rank: int  # 1 = the model's top choice


@dataclass(frozen=True)
class Prediction:
    model: str
    prompt: str
    position: int  # absolute position whose next token is predicted
    context_token: str  # the token at that position
    top: list[TokenScore]
    entropy_nats: float
    target: TokenScore | None

    def to_dict(self) -> dict:
        def score(s: TokenScore) -> dict:
            return {
                "token": s.token,
                "token_id": s.token_id,
                "probability": s.probability,
                "logit": s.logit,
                "rank": s.rank,
            }

        return {
            "kind": "prediction",
            "model": self.model,
            "prompt": self.prompt,
            "position": self.position,
            "context_token": self.context_token,
            "entropy_nats": self.entropy_nats,
            "top": [score(s) for s in self.top],
            "target": score(self.target) if self.target else None,
        }

    def _repr_html_(self) -> str:
        rows = [[s.rank, repr(s.token), s.probability, s.logit] for s in self.top]
        caption = (
            f"next token after {self.context_token!r} (position {self.position}); entropy {self.entropy_nats:.3f} nats"
        )
        return html_table(["rank", "token", "probability", "logit"], rows, caption=caption)


def predict(model: Model, prompt: str, *, k: int = 10, position: int = -1, target: str | None = None) -> Prediction:
    """Top-``k`` next tokens at ``position`` (default: after the last token), and ``target``'s standing.

    ``target`` is text; its first token is scored (include the leading space, e.g. ``" Paris"``).
    """
    if not 1 <= k <= 1000:
        raise InputError(f"k must be in 1..1000, got {k}")
    run = model.run(prompt)
    n = run.tokens.shape[1]
    if not -n <= position < n:
        raise InputError(
            f"position {position} is out of range for a prompt of {n} tokens (valid: 0..{n - 1} or -{n}..-1)"
        )
    absolute = position % n
    logits = run.logits[0, absolute].float()
    log_probs = torch.log_softmax(logits, dim=-1)
    probs = log_probs.exp()
    entropy = float(-(probs * log_probs).sum())
    top = torch.topk(logits, k)

    def score(token_id: int, rank: int | None = None) -> TokenScore:
        if rank is None:
            rank = int((logits > logits[token_id]).sum()) + 1
        return TokenScore(
            model.tokenizer.decode([token_id]), token_id, float(probs[token_id]), float(logits[token_id]), rank
        )

    target_score = None
    if target is not None:
        ids = model.tokenizer(target, add_special_tokens=False)["input_ids"]
        if not ids:
            raise InputError("the target is empty; give the text of the token to score, e.g. ' Paris'")
        target_score = score(ids[0])
    return Prediction(
        model=model.name,
        prompt=prompt,
        position=absolute,
        context_token=model.tokenizer.decode([int(run.tokens[0, absolute])]),
        top=[score(int(i), r + 1) for r, i in enumerate(top.indices)],
        entropy_nats=entropy,
        target=target_score,
    )
