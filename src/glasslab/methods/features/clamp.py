"""Clamp SAE features while the model reads and writes: side by side with the model's own output.

The clamp is an ``SAESplice`` (see ``splice.py``): at the SAE's hook the chosen features are set to a
value, scaled or zeroed, and the activation changes by exactly the decoder's response, the SAE's
reconstruction error kept. Two views:

- ``clamp_features``: the next-token prediction at the prompt's last token with and without the clamp
  (top tokens, their probabilities, the KL divergence), and the greedy (or seeded sampled) continuation
  both ways, with the features' values at every position read in each generation;
- ``clamp_sweep``: the same prompt at several clamp values in one result.

Positions are absolute, as for every intervention; negatives count from the prompt's end (``-1``: its
last token). With no positions the clamp acts on every prompt and generated token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ...dictionaries import SAE
from ...dictionaries.loading import labels_of, origin_of, validate
from ...errors import InputError
from ...interventions.splice import FeatureEdit, FeatureRecorder, SAESplice
from ...model.model import Model
from ...views.explanations import explanation
from ...views.figures import Bars, Figure, Heatmap
from ...views.result import Record, Result
from .encode import check_feature


@dataclass(frozen=True)
class TokenProb(Record):
    token: str
    token_id: int
    baseline: float  # probability without the clamp
    clamped: float  # with it


@dataclass(frozen=True)
class NextToken(Record):
    """The prediction after the prompt's last token, without and with the clamp."""

    baseline_top: str
    clamped_top: str
    kl: float  # KL(baseline || clamped) in nats
    tokens: list[TokenProb]  # each side's top tokens, by the larger of the two probabilities


@dataclass(frozen=True)
class _Clamped(Result):
    """What every clamp result starts with: the model, the SAE and its hook, the prompt, the clamped features
    and their labels, and how they were clamped."""

    model: str
    sae: str
    hook: str
    prompt: str
    features: list[int]
    labels: list[str | None]
    mode: str  # "value", "scale" or "zero" ("value" or "scale" in a sweep)


@dataclass(frozen=True)
class FeatureClamp(_Clamped):
    kind = "sae_feature_clamp"

    amount: float
    positions: list[int] | None  # None = every position
    next_token: NextToken
    baseline: str
    clamped: str
    baseline_tokens: list[str]  # prompt tokens + new tokens
    clamped_tokens: list[str]
    first_difference: int | None  # index of the first new token that differs; None if the texts agree
    baseline_values: list[list[float]]  # [feature][position]: the feature's value in the baseline generation
    clamped_values: list[list[float]]  # [feature][position]: its value after the clamp

    def describe(self) -> str:
        return FeatureEdit(self.features, self.mode, self.amount, self.positions).describe()  # type: ignore[arg-type]

    def figure(self) -> Figure:
        rows = [f"F{f}" + (f" {label}" if label else "") for f, label in zip(self.features, self.labels, strict=True)]
        panels: list[Heatmap | Bars] = [
            Bars(
                "next-token probability: clamped minus baseline",
                [repr(t.token) for t in self.next_token.tokens],
                [t.clamped - t.baseline for t in self.next_token.tokens],
                "probability change",
                hover=[f"{t.token!r}: {t.baseline:.3f} -> {t.clamped:.3f}" for t in self.next_token.tokens],
            )
        ]
        for name, values, tokens in (
            ("baseline", self.baseline_values, self.baseline_tokens),
            ("clamped", self.clamped_values, self.clamped_tokens),
        ):
            if values and values[0]:
                panels.append(
                    Heatmap(
                        f"feature values, {name} generation",
                        values,
                        rows,
                        [f"{i} {t!r}" for i, t in enumerate(tokens[: len(values[0])])],
                        row_title="feature",
                        col_title="position (token read there)",
                        value_label="activation",
                        cell_text=[[f"{v:.1f}" for v in row] for row in values],
                    )
                )
        return Figure(
            f"{self.model}: {self.describe()} at {self.hook}",
            panels,
            **explanation("sae_feature_clamp"),
            extra={
                "baseline": self.baseline,
                "clamped": self.clamped,
                "KL(next token)": f"{self.next_token.kl:.4f} nats",
                "first difference": "none" if self.first_difference is None else f"new token {self.first_difference}",
            },
        )


@dataclass(frozen=True)
class SweepRow(Record):
    amount: float
    completion: str
    next_top: str
    baseline_top_prob: float  # probability of the baseline's most likely next token under this clamp
    kl: float


@dataclass(frozen=True)
class FeatureClampSweep(_Clamped):
    kind = "sae_clamp_sweep"

    positions: list[int] | None
    baseline: str
    baseline_top: str
    baseline_top_prob: float
    rows: list[SweepRow]

    def figure(self) -> Figure:
        what = {"value": "set to", "scale": "scaled by"}[self.mode]
        labels = [f"{what} {row.amount:g}" for row in self.rows]
        features = ", ".join(f"F{f}" for f in self.features)
        return Figure(
            f"{self.model}: sweeping {features} at {self.hook}",
            [
                Bars(
                    f"probability of the baseline's next token {self.baseline_top!r}",
                    ["baseline", *labels],
                    [self.baseline_top_prob, *(row.baseline_top_prob for row in self.rows)],
                    "probability",
                    hover=[
                        "baseline: " + self.baseline,
                        *(f"{lab}: {row.completion!r}" for lab, row in zip(labels, self.rows, strict=True)),
                    ],
                ),
                Bars("KL(baseline || clamped) of the next token", labels, [row.kl for row in self.rows], "nats"),
            ],
            **explanation("sae_clamp_sweep", features=features, what=what),
            extra={"baseline": self.baseline},
        )


def _edit(mode: str, features: list[int], amount: float, positions: Sequence[int] | None) -> FeatureEdit:
    return FeatureEdit(features, mode, amount, None if positions is None else list(positions))  # type: ignore[arg-type]


def _check(model: Model, sae: SAE, features: Sequence[int] | int) -> list[int]:
    chosen = [features] if isinstance(features, int) else [int(f) for f in features]
    if not chosen:
        raise InputError("no features given; name at least one feature index")
    for feature in chosen:
        check_feature(sae, feature)
    validate(sae, model, allow_other_model=True)  # shape and hook; the name was checked when it was loaded
    return chosen


def _next_token(model: Model, prompt: str, splice: SAESplice | None) -> torch.Tensor:
    """log-probabilities of the token after ``prompt`` [vocab]."""
    run = model.run(prompt, interventions=[splice] if splice else [])
    return torch.log_softmax(run.last_logits()[0].float(), dim=-1)


def _compare(model: Model, base: torch.Tensor, clamped: torch.Tensor, top: int) -> NextToken:
    p, q = base.exp(), clamped.exp()
    ids = list(dict.fromkeys(torch.topk(p, top).indices.tolist() + torch.topk(q, top).indices.tolist()))
    ids.sort(key=lambda i: -max(float(p[i]), float(q[i])))
    decode = model.tokenizer.decode
    return NextToken(
        baseline_top=decode([int(p.argmax())]),
        clamped_top=decode([int(q.argmax())]),
        kl=float((p * (base - clamped)).sum()),
        tokens=[TokenProb(decode([i]), i, float(p[i]), float(q[i])) for i in ids],
    )


def clamp_features(
    model: Model,
    sae: SAE,
    prompt: str,
    features: int | Sequence[int],
    *,
    value: float | None = None,
    scale: float | None = None,
    zero: bool = False,
    positions: Sequence[int] | None = None,
    max_new_tokens: int = 20,
    temperature: float = 0.0,
    seed: int | None = None,
    top: int = 5,
) -> FeatureClamp:
    """The prompt's next token and continuation with and without ``features`` clamped: exactly one of
    ``value``, ``scale`` and ``zero``. Sampling (``temperature > 0``) uses ``seed`` for both."""
    if sum((value is not None, scale is not None, bool(zero))) != 1:
        raise InputError("choose exactly one of value=..., scale=... or zero=True")
    chosen = _check(model, sae, features)
    mode = "zero" if zero else ("value" if value is not None else "scale")
    amount = 0.0 if zero else float(value if value is not None else scale)
    edit = _edit(mode, chosen, amount, positions)
    options = dict(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    base_record, clamp_record = FeatureRecorder(chosen), FeatureRecorder(chosen)
    # The baseline goes through the splice too, with no edit: its output is exactly the model's own.
    base = model.generate(prompt, interventions=[SAESplice(sae, recorder=base_record)], **options)
    clamped = model.generate(prompt, interventions=[SAESplice(sae, [edit], recorder=clamp_record)], **options)
    next_token = _compare(
        model, _next_token(model, prompt, None), _next_token(model, prompt, SAESplice(sae, [edit])), top
    )
    prompt_tokens = model.to_str_tokens(prompt)
    pairs = list(zip(base.new_token_ids, clamped.new_token_ids, strict=False))
    first = next((i for i, (a, b) in enumerate(pairs) if a != b), None)
    if first is None and len(base.new_token_ids) != len(clamped.new_token_ids):
        first = len(pairs)
    labels = labels_of(sae)
    return FeatureClamp(
        model=model.name,
        sae=origin_of(sae).source,
        hook=sae.hook,
        prompt=prompt,
        features=chosen,
        labels=[labels[f].label if f in labels else None for f in chosen],
        mode=mode,
        amount=amount,
        positions=None if positions is None else list(positions),
        next_token=next_token,
        baseline=base.completion,
        clamped=clamped.completion,
        baseline_tokens=prompt_tokens + base.new_tokens,
        clamped_tokens=prompt_tokens + clamped.new_tokens,
        first_difference=first,
        baseline_values=base_record.values(edited=False).tolist(),
        clamped_values=clamp_record.values().tolist(),
    )


def clamp_sweep(
    model: Model,
    sae: SAE,
    prompt: str,
    features: int | Sequence[int],
    amounts: Sequence[float],
    *,
    mode: str = "value",
    positions: Sequence[int] | None = None,
    max_new_tokens: int = 20,
    temperature: float = 0.0,
    seed: int | None = None,
) -> FeatureClampSweep:
    """The prompt's next token and continuation with ``features`` set to (``mode="value"``) or scaled by
    (``"scale"``) each of ``amounts``, against the baseline, in one result."""
    if mode not in ("value", "scale"):
        raise InputError(f"sweep mode '{mode}' is unknown; use 'value' or 'scale'")
    amounts = [float(a) for a in amounts]
    if not amounts or len(amounts) > 64:
        raise InputError("give between 1 and 64 clamp values to sweep")
    chosen = _check(model, sae, features)
    options = dict(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    base = _next_token(model, prompt, None)
    top_id = int(base.argmax())
    rows = []
    for amount in amounts:
        splice = SAESplice(sae, [_edit(mode, chosen, amount, positions)])
        logprobs = _next_token(model, prompt, splice)
        generation = model.generate(prompt, interventions=[splice], **options)
        rows.append(
            SweepRow(
                amount=amount,
                completion=generation.completion,
                next_top=model.tokenizer.decode([int(logprobs.argmax())]),
                baseline_top_prob=float(logprobs[top_id].exp()),
                kl=float((base.exp() * (base - logprobs)).sum()),
            )
        )
    labels = labels_of(sae)
    return FeatureClampSweep(
        model=model.name,
        sae=origin_of(sae).source,
        hook=sae.hook,
        prompt=prompt,
        features=chosen,
        labels=[labels[f].label if f in labels else None for f in chosen],
        mode=mode,
        positions=None if positions is None else list(positions),
        baseline=model.generate(prompt, **options).completion,
        baseline_top=model.tokenizer.decode([top_id]),
        baseline_top_prob=float(base[top_id].exp()),
        rows=rows,
    )
