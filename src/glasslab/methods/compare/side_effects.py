"""Side-effect report: did an intervention do what it should without breaking anything else?

One result holds, with and without the intervention:

- the targeted effect: a metric (``methods.metrics``: logit, logit_diff, prob, loss, kl) on the target
  prompt, before and after;
- a reference corpus (packed sequences, streamed in batches): mean loss per token before and after, and
  KL(before || after) of the next-token distributions, mean and largest over positions;
- neutral prompts (ordinary text unrelated to the target): each one's loss before and after, the KL at
  its last position (its next-token prediction) and over all its positions, and its top next token.

The intervention is either a list of activation interventions (``Ablate``, ``Add``, ``Clamp``, steering
``Add``, SAE feature clamps: anything ``InterventionLike``), applied through ``model.intervene``, or a
weight edit: any callable returning a context manager that changes the model in place on entry and
restores it on exit (``methods/editing`` provides them). A weight edit is entered once per batch, and the
model's parameters are fingerprinted before and checked after every exit, so an edit that fails to
restore the model is reported at once instead of silently corrupting the "before" runs.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ...data import Corpus, batches, load_corpus, packed_sequences
from ...errors import GlasslabError, InputError
from ...model.hooks import InterventionLike
from ...model.model import Model
from ...progress import progress
from ...views.explanations import explanation
from ...views.figures import Bars, Figure
from ...views.result import Record, Result
from ..metrics import Metric, kl_divergence, make_metric

NEUTRAL_PROMPTS: tuple[str, ...] = (
    "The weather today is",
    "Once upon a time, there was a",
    "The capital of France is",
    "1, 2, 3, 4, 5,",
    "def add(a, b):\n    return",
    "She opened the door and saw",
)

Scope = Callable[[], contextlib.AbstractContextManager]
InterventionInput = InterventionLike | Sequence[InterventionLike] | Scope


@dataclass(frozen=True)
class TargetEffect(Record):
    json_keys = ("prompt", "metric", "before", "after", "change")

    prompt: str
    metric: str
    before: float
    after: float

    @property
    def change(self) -> float:
        return self.after - self.before


@dataclass(frozen=True)
class CorpusEffect(Record):
    json_keys = ("source", "sequences", "tokens", "loss_before", "loss_after", "loss_change", "kl_mean", "kl_max")

    source: str
    sequences: int
    tokens: int
    loss_before: float
    loss_after: float
    kl_mean: float
    kl_max: float

    def _json_loss_change(self) -> float:
        return self.loss_after - self.loss_before


@dataclass(frozen=True)
class NeutralEffect(Record):
    json_keys = ("prompt", "loss_before", "loss_after", "kl_last", "kl_mean", "top_before", "top_after", "top_changed")

    prompt: str
    loss_before: float | None  # None for a one-token prompt
    loss_after: float | None
    kl_last: float  # at its last position (its next-token prediction)
    kl_mean: float  # over all its positions
    top_before: str
    top_after: str

    def _json_top_changed(self) -> bool:
        return self.top_before != self.top_after


@dataclass(frozen=True)
class SideEffects(Result):
    kind = "side_effects"

    model: str
    intervention: list[str]  # what was applied, one line each
    target: TargetEffect | None
    corpus: CorpusEffect | None
    neutral: list[NeutralEffect]

    def figure(self) -> Figure:
        panels = []
        if self.target is not None:
            panels.append(
                Bars(
                    f"targeted effect: {self.target.metric} on {self.target.prompt!r}",
                    ["before", "after"],
                    [self.target.before, self.target.after],
                    self.target.metric,
                )
            )
        if self.corpus is not None:
            c = self.corpus
            panels.append(
                Bars(
                    f"reference text ({c.source}): loss per token",
                    ["before", "after"],
                    [c.loss_before, c.loss_after],
                    "nats",
                )
            )
        if self.neutral:
            panels.append(
                Bars(
                    "neutral prompts: KL(before || after) of the next-token prediction",
                    [n.prompt[:40] for n in self.neutral],
                    [n.kl_last for n in self.neutral],
                    "nats",
                    hover=[f"{n.prompt!r}: top {n.top_before!r} -> {n.top_after!r}" for n in self.neutral],
                )
            )
        extra = {"intervention": "; ".join(self.intervention)}
        if self.target is not None:
            extra["targeted change"] = f"{self.target.before:.4f} -> {self.target.after:.4f}"
        if self.corpus is not None:
            extra["reference KL"] = f"mean {self.corpus.kl_mean:.4f}, max {self.corpus.kl_max:.4f} nats"
        changed = sum(n.top_before != n.top_after for n in self.neutral)
        if self.neutral:
            extra["neutral top tokens changed"] = f"{changed} of {len(self.neutral)}"
        return Figure(
            f"{self.model}: side effects of an intervention",
            panels,
            **explanation("side_effects"),
            extra=extra,
        )


def _describe(item: Any) -> str:
    fields = [
        f"{k}={v}" for k in ("head", "position", "neuron", "key_position") if (v := getattr(item, k, None)) is not None
    ]
    scale = getattr(item, "scale", None)
    if scale is not None and scale != 1.0:
        fields.append(f"scale={scale}")
    return f"{type(item).__name__} {getattr(item, 'hook', '')}" + (f" ({', '.join(fields)})" if fields else "")


def _as_scope(model: Model, intervention: InterventionInput) -> tuple[Scope, list[str], bool]:
    """(a factory of the scope to run "after" in, its description, whether it edits weights)."""
    if isinstance(intervention, InterventionLike):
        intervention = [intervention]
    if isinstance(intervention, Sequence) and not isinstance(intervention, str):
        items = list(intervention)
        bad = [i for i in items if not isinstance(i, InterventionLike)]
        if bad:
            raise InputError(f"side_effects takes interventions (Ablate, Add, Clamp...), not {bad[0]!r}")
        with model.intervene(*items):  # validates hooks and indices up front, with one-line errors
            pass
        return (lambda: model.intervene(*items)), [_describe(i) for i in items] or ["nothing"], False
    if callable(intervention):
        return intervention, [f"weight edit {_callable_name(intervention)}"], True
    raise InputError(
        "the intervention must be a list of Ablate/Add/Clamp/... values or a callable returning a context manager"
    )


def _callable_name(fn: Any) -> str:
    """A readable name for an edit factory: a function, a bound method (``Edit.applied``) or a partial."""
    fn = getattr(fn, "func", fn)  # functools.partial
    owner = getattr(fn, "__self__", None)
    name = getattr(fn, "__name__", None) or type(fn).__name__
    return f"{type(owner).__name__}.{name}" if owner is not None else name


def _fingerprint(model: Model) -> torch.Tensor:
    """Per parameter, its sum and sum of squares (float64): changes when an edit is left in place."""
    with torch.inference_mode():
        return torch.stack(
            [torch.stack([p.double().sum(), p.double().square().sum()]) for p in model.hf.parameters()]
        ).cpu()


class _Guarded:
    """Enters the scope and, for weight edits, checks on exit that the weights are back."""

    def __init__(self, model: Model, scope: Scope, edits_weights: bool) -> None:
        self.model, self.scope, self.edits_weights = model, scope, edits_weights
        self.reference = _fingerprint(model) if edits_weights else None

    @contextlib.contextmanager
    def __call__(self):
        manager = self.scope()
        if not isinstance(manager, contextlib.AbstractContextManager):
            raise InputError("the weight edit must return a context manager (an object usable in a with statement)")
        with manager:
            yield
        if self.reference is not None and not torch.equal(_fingerprint(self.model), self.reference):
            raise GlasslabError(
                "the weight edit left the model changed after its scope ended; fix the edit's restore step "
                "and reload the model before trusting further results"
            )


def _token_stats(model: Model, ids: torch.Tensor, mask: torch.Tensor | None, after) -> dict[str, torch.Tensor]:
    """Per row and position: next-token loss before/after, KL(before || after), top token before/after."""
    before = model.run(ids, attention_mask=mask)
    with after():
        edited = model.run(ids, attention_mask=mask)
    log_before = torch.log_softmax(before.logits.float(), dim=-1).cpu()
    log_after = torch.log_softmax(edited.logits.float(), dim=-1).cpu()
    real = before.attention_mask.bool()
    targets = before.tokens[:, 1:, None]
    next_real = real[:, 1:] & real[:, :-1]
    return {
        "real": real,
        "next_real": next_real,
        "loss_before": -log_before[:, :-1].gather(-1, targets)[..., 0] * next_real,
        "loss_after": -log_after[:, :-1].gather(-1, targets)[..., 0] * next_real,
        "kl": kl_divergence(log_before, log_after) * real,
        "top_before": log_before.argmax(-1),
        "top_after": log_after.argmax(-1),
    }


def side_effects(
    model: Model,
    intervention: InterventionInput,
    *,
    prompt: str | None = None,
    target: str | int | None = None,
    versus: str | int | None = None,
    metric: str | Metric | None = None,
    position: int = -1,
    corpus: str | Corpus | None = "builtin",
    sequences: int = 8,
    seq_len: int = 64,
    batch_size: int = 4,
    neutral: Sequence[str] | None = NEUTRAL_PROMPTS,
) -> SideEffects:
    """Measure an intervention's targeted effect and its side effects in one result (see the module doc).

    ``prompt`` with ``target``/``versus``/``metric`` gives the targeted effect (``metric`` defaults to
    ``logit_diff`` with ``versus``, else ``logit``; ``loss`` and ``kl`` need no target). ``corpus=None``
    or ``neutral=None`` skips that part.
    """
    scope, described, edits_weights = _as_scope(model, intervention)
    after = _Guarded(model, scope, edits_weights)
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    target_effect = None
    if prompt is not None:
        target_effect = _target_effect(model, after, prompt, target, versus, metric, position)
    elif any(x is not None for x in (target, versus, metric)):
        raise InputError("a target, versus token or metric needs the target prompt too (prompt=...)")
    corpus_effect = None
    if corpus is not None:
        corpus_effect = _corpus_effect(model, after, corpus, sequences, seq_len, batch_size)
    neutral_effects = _neutral_effects(model, after, neutral) if neutral else []
    if target_effect is None and corpus_effect is None and not neutral_effects:
        raise InputError("nothing to measure: give a target prompt, a corpus or neutral prompts")
    return SideEffects(model.name, described, target_effect, corpus_effect, neutral_effects)


def _target_effect(
    model: Model,
    after: _Guarded,
    prompt: str,
    target: str | int | None,
    versus: str | int | None,
    metric: str | Metric | None,
    position: int,
) -> TargetEffect:
    """The metric on the target prompt without and with the intervention."""
    chosen = (
        metric
        if isinstance(metric, Metric)
        else make_metric(model, metric, target=target, versus=versus, position=position)
    )
    clean = model.run(prompt)
    if chosen.kind == "kl" and chosen.reference is None:
        chosen = chosen.with_reference(model, clean)
    before = float(chosen(model, clean)[0])
    with after():
        after_value = float(chosen(model, model.run(prompt))[0])
    return TargetEffect(prompt, chosen.describe(model), before, after_value)


def _corpus_effect(
    model: Model, after: _Guarded, corpus: str | Corpus, sequences: int, seq_len: int, batch_size: int
) -> CorpusEffect:
    """Loss and KL over a reference corpus, streamed in batches so memory does not grow with it."""
    if sequences < 1:
        raise InputError(f"sequences must be at least 1, got {sequences}")
    text = corpus if isinstance(corpus, Corpus) else load_corpus(corpus)
    stream = batches(packed_sequences(model, text, seq_len, limit=sequences), batch_size)
    sums = {"loss_before": 0.0, "loss_after": 0.0, "kl": 0.0}
    kl_max, n_loss, n_kl, n_seqs = 0.0, 0, 0, 0
    for batch in progress(stream, total=math.ceil(sequences / batch_size), description="side effects"):
        stats = _token_stats(model, batch, None, after)
        for key in sums:
            sums[key] += float(stats[key].sum())
        kl_max = max(kl_max, float(stats["kl"].max()))
        n_loss += int(stats["next_real"].sum())
        n_kl += int(stats["real"].sum())
        n_seqs += batch.shape[0]
    if n_kl == 0:
        raise InputError("the reference corpus gave no sequences; use more text or a shorter seq_len")
    return CorpusEffect(
        text.describe(),
        n_seqs,
        n_kl,
        sums["loss_before"] / n_loss,
        sums["loss_after"] / n_loss,
        sums["kl"] / n_kl,
        kl_max,
    )


def _neutral_effects(model: Model, after: _Guarded, neutral: Sequence[str]) -> list[NeutralEffect]:
    """Per neutral prompt: its loss before/after and how the prediction at its end moved."""
    tokens = model.tokenize(list(neutral))
    stats = _token_stats(model, tokens.input_ids, tokens.attention_mask, after)
    decode = model.tokenizer.decode
    effects = []
    for row, text in enumerate(neutral):
        length = int(stats["real"][row].sum())
        counted = int(stats["next_real"][row].sum())
        last = length - 1
        effects.append(
            NeutralEffect(
                text,
                float(stats["loss_before"][row].sum()) / counted if counted else None,
                float(stats["loss_after"][row].sum()) / counted if counted else None,
                float(stats["kl"][row, last]),
                float(stats["kl"][row].sum()) / length,
                decode([int(stats["top_before"][row, last])]),
                decode([int(stats["top_after"][row, last])]),
            )
        )
    return effects
