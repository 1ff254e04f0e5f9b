"""Token-level helpers shared by tracing, editing and evaluation: where the subject is, how likely a target is.

Positions count from the start of ``model.tokenize(text)``, BOS included, so they index runs directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ...errors import InputError
from ...model.model import Model
from ...model.run import Run


def subject_span(model: Model, text: str, subject: str, after: int = 0) -> tuple[int, int]:
    """``(start, end)`` token positions covering the first occurrence of ``subject`` in ``text`` from
    character ``after`` on (past a prefix).

    Tokens whose characters overlap the subject count, so a subject merged with a neighbouring character
    (e.g. "Paris's") still gets its tokens.
    """
    if not subject or not subject.strip():
        raise InputError("the subject is empty; give the words of the prompt that name the subject")
    begin = text.find(subject, after)
    if begin < 0:
        raise InputError(f"the subject {subject!r} does not occur in the prompt {text!r}; copy it exactly")
    end = begin + len(subject)
    bos = 1 if model.tokenizer.bos_token_id is not None else 0
    if getattr(model.tokenizer, "is_fast", False):
        encoded = model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        inside = [i for i, (a, b) in enumerate(encoded["offset_mapping"]) if a < end and b > begin]
        if inside:
            return inside[0] + bos, inside[-1] + 1 + bos
    # Slow tokenizers: count the tokens of the text before and up to the subject's end.
    before = len(model.tokenizer(text[:begin], add_special_tokens=False)["input_ids"]) if begin else 0
    upto = len(model.tokenizer(text[:end], add_special_tokens=False)["input_ids"])
    if upto <= before:
        raise InputError(f"the subject {subject!r} covers no token of {text!r}")
    return before + bos, upto + bos


def target_ids(model: Model, target: str) -> list[int]:
    """The token ids of a target text (include its leading space, e.g. " Paris")."""
    if not isinstance(target, str) or not target.strip():
        raise InputError("the target is empty; give the answer's text with its leading space, e.g. ' Paris'")
    ids = model.tokenizer(target, add_special_tokens=False)["input_ids"]
    if not ids:
        raise InputError(f"the target {target!r} has no tokens")
    return [int(i) for i in ids]


def teacher_forced(
    model: Model, prompts: Sequence[str], targets: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
    """Right-padded ids of ``prompt + target`` rows, their mask, and each row's target positions.

    Row ``i``'s target token ``j`` is predicted at position ``starts[i] + j - 1`` (the token before it).
    """
    rows, spans = [], []
    for prompt, target in zip(prompts, targets, strict=True):
        prompt_ids = model.to_tokens(prompt)[0].tolist()
        answer = target_ids(model, target)
        rows.append(prompt_ids + answer)
        spans.append(list(range(len(prompt_ids) - 1, len(prompt_ids) - 1 + len(answer))))
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), model.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return ids, mask, spans


def target_log_probs(model: Model, run: Run, spans: list[list[int]]) -> torch.Tensor:
    """[rows] mean log-probability per target token, read from a run of ``teacher_forced`` rows.

    Only the target positions are unembedded; the run may keep its graph (ROME's loss) or not.
    """
    rows = torch.tensor([row for row, span in enumerate(spans) for _ in span])
    positions = torch.tensor([p for span in spans for p in span])
    if run.logits is not None:
        logits = run.logits[rows.to(run.logits.device), positions.to(run.logits.device)]
    else:
        normed = run.cache["ln_final"]
        logits = decode(model, normed[rows.to(normed.device), positions.to(normed.device)])
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    answers = run.tokens[rows, positions + 1].to(log_probs.device)
    picked = log_probs.gather(1, answers[:, None])[:, 0]
    out, start = [], 0
    for span in spans:
        out.append(picked[start : start + len(span)].mean())
        start += len(span)
    return torch.stack(out)


def decode(model: Model, normed: torch.Tensor) -> torch.Tensor:
    """Logits from ``ln_final`` rows: ``normed @ W_U + b_U`` and any soft-cap, computed as the unembedding module
    does (``linear`` of its own weight), so the logits match the run's bit for bit; keeps the graph."""
    logits = torch.nn.functional.linear(normed, model.weights.W_U().T, model.weights.get("b_U"))
    cap = getattr(model.config, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


def score_targets(model: Model, prompts: Sequence[str], targets: Sequence[str], chunk: int = 64) -> torch.Tensor:
    """[rows] mean log-probability per token of each target after its prompt (no gradients)."""
    values = []
    for start in range(0, len(prompts), chunk):
        ids, mask, spans = teacher_forced(model, prompts[start : start + chunk], targets[start : start + chunk])
        run = model.run(ids, attention_mask=mask, cache=["ln_final"], logits=False)
        values.append(target_log_probs(model, run, spans).cpu())
    return torch.cat(values) if values else torch.zeros(0)
