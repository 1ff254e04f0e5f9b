"""CounterFact-style measures of an edit (Meng et al. 2022), before and after it is applied.

For each fact, with ``p(t | prompt)`` the target's probability per token (the exponential of its mean
log-probability, so multi-token targets compare fairly):

- efficacy: on the edit prompt, does ``target_new`` beat ``target_true``? (1 or 0; the paper's ES)
- generalisation: the share of paraphrases on which ``target_new`` beats ``target_true`` (PS)
- specificity: the share of neighbour prompts (other subjects, same true answer) on which ``target_true``
  still beats ``target_new`` (NS)
- the margins ``p(new) - p(true)`` behind each (the paper's EM/PM/NM magnitudes)
- fluency: the weighted mean of bigram and trigram entropies (bits, weights 2/3 and 4/3) of greedy
  continuations of the edit prompt and the first paraphrase: an edit that makes the model repeat itself
  lowers it.

``evaluate_edit`` measures the unedited model, applies the edit inside a ``with`` block, measures again,
and leaves the model as it was.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from ...errors import InputError
from ...model.model import Model
from ...views.explanations import explanation
from ...views.figures import Bars, Figure, Heatmap
from ...views.result import Record, Result
from .edit import Edit
from .facts import Fact
from .prompts import score_targets

MEASURES = ("efficacy", "generalisation", "specificity")
_WORD = re.compile(r"\w+|[^\w\s]")


@dataclass(frozen=True)
class FactScores(Record):
    """One fact's measures on one model state."""

    efficacy: float
    generalisation: float | None  # None without paraphrases
    specificity: float | None  # None without neighbours
    efficacy_margin: float
    generalisation_margin: float | None
    specificity_margin: float | None  # p(true) - p(new) on the neighbours
    p_new: float  # on the edit prompt
    p_true: float
    fluency: float | None
    texts: list[str]


@dataclass(frozen=True)
class EditEvaluation(Result):
    """Efficacy, generalisation, specificity and fluency of each fact, before and after an edit."""

    kind = "edit_evaluation"
    json_keys = ("model", "method", "layers", "summary", "edit", "facts")

    model: str
    method: str
    layers: list[int]
    facts: list[Fact]
    before: list[FactScores]
    after: list[FactScores]
    edit: Edit | None = None

    def mean(self, measure: str, when: str) -> float | None:
        """Mean of a measure over the facts that have it (``when``: "before" or "after")."""
        rows = self.before if when == "before" else self.after
        values = [getattr(row, measure) for row in rows if getattr(row, measure) is not None]
        return sum(values) / len(values) if values else None

    def summary(self) -> dict[str, dict[str, float | None]]:
        measures = (*MEASURES, "efficacy_margin", "generalisation_margin", "specificity_margin", "fluency")
        return {m: {"before": self.mean(m, "before"), "after": self.mean(m, "after")} for m in measures}

    def table(self) -> list[list[str]]:
        """Rows: measure, before, after (means over the facts), as text."""

        def fmt(value: float | None, measure: str) -> str:
            if value is None:
                return "-"
            return f"{value:.2f}" if measure == "fluency" else f"{value:.3f}"

        return [[m, fmt(v["before"], m), fmt(v["after"], m)] for m, v in self.summary().items()]

    def _json_summary(self) -> dict[str, dict[str, float | None]]:
        return self.summary()

    def _json_facts(self) -> list[dict]:
        rows = zip(self.facts, self.before, self.after, strict=True)
        return [{"fact": fact, "before": before, "after": after} for fact, before, after in rows]

    def figure(self) -> Figure:
        columns = [f"{m} {when}" for m in MEASURES for when in ("before", "after")]
        grid, text = [], []
        for b, a in zip(self.before, self.after, strict=True):
            row = [getattr(s, m) for m in MEASURES for s in (b, a)]
            grid.append([math.nan if v is None else v for v in row])
            text.append(["-" if v is None else f"{v:.2f}" for v in row])
        labels = [f"{f.subject}: {f.target_true.strip()} -> {f.target_new.strip()}" for f in self.facts]
        summary = self.summary()
        panels: list[Heatmap | Bars] = [
            Heatmap(
                "each fact, before and after (1 = the edit's goal met on every prompt)",
                [[0.0 if math.isnan(v) else v for v in row] for row in grid],
                labels,
                columns,
                row_title="fact",
                col_title="measure",
                value_label="share of prompts",
                cell_text=text,
            ),
            Bars(
                "means over the facts",
                [f"{m} {when}" for m in MEASURES for when in ("before", "after")],
                [summary[m][when] or 0.0 for m in MEASURES for when in ("before", "after")],
                "share of prompts",
            ),
        ]
        if summary["fluency"]["before"] is not None:
            panels.append(
                Bars(
                    "fluency: n-gram entropy of generated text (bits; lower = more repetitive)",
                    ["before", "after"],
                    [summary["fluency"]["before"], summary["fluency"]["after"] or 0.0],
                    "bits",
                    hover=[
                        f"before: {' | '.join(self.before[0].texts)}",
                        f"after: {' | '.join(self.after[0].texts)}",
                    ],
                )
            )
        return Figure(
            f"{self.model}: {self.method.upper()} edit of {len(self.facts)} fact(s), evaluated",
            panels,
            **explanation(self.kind),
            extra={"method": self.method, "layers": ", ".join(map(str, self.layers)), "facts": str(len(self.facts))},
        )


def ngram_entropy(text: str, ns: Sequence[int] = (2, 3), weights: Sequence[float] = (2 / 3, 4 / 3)) -> float:
    """Weighted mean of the n-gram entropies (bits) of a text's words; 0 for a text too short to have any."""
    words = _WORD.findall(text.lower())
    entropies = []
    for n, weight in zip(ns, weights, strict=True):
        counts = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
        total = sum(counts.values())
        entropy = -sum(c / total * math.log2(c / total) for c in counts.values()) if total else 0.0
        entropies.append(weight * entropy)
    return sum(entropies) / len(entropies)


def fact_scores(
    model: Model, facts: Sequence[Fact], *, fluency: bool = True, max_new_tokens: int = 30
) -> list[FactScores]:
    """Measure every fact on the model as it is now."""
    prompts, targets, owners = [], [], []
    for i, fact in enumerate(facts):
        for kind, texts in (("edit", [fact.text]), ("paraphrase", fact.paraphrases), ("neighbour", fact.neighbours)):
            for text in texts:
                for which in ("new", "true"):
                    prompts.append(text)
                    targets.append(fact.target_new if which == "new" else fact.target_true)
                    owners.append((i, kind))
    probs = score_targets(model, prompts, targets).exp().tolist()
    results = []
    for i, fact in enumerate(facts):
        pairs = {"edit": [], "paraphrase": [], "neighbour": []}
        for j in range(0, len(prompts), 2):
            owner, kind = owners[j]
            if owner == i:
                pairs[kind].append((probs[j], probs[j + 1]))  # (p_new, p_true)
        p_new, p_true = pairs["edit"][0]
        texts = []
        if fluency:
            for prompt in [fact.text, *fact.paraphrases[:1]]:
                texts.append(model.generate(prompt, max_new_tokens=max_new_tokens).completion)
        results.append(
            FactScores(
                efficacy=float(p_new > p_true),
                generalisation=_share(pairs["paraphrase"], new_wins=True),
                specificity=_share(pairs["neighbour"], new_wins=False),
                efficacy_margin=p_new - p_true,
                generalisation_margin=_margin(pairs["paraphrase"], sign=1),
                specificity_margin=_margin(pairs["neighbour"], sign=-1),
                p_new=p_new,
                p_true=p_true,
                fluency=sum(ngram_entropy(t) for t in texts) / len(texts) if texts else None,
                texts=texts,
            )
        )
    return results


def evaluate_edit(
    model: Model,
    edit: Edit,
    facts: Sequence[Fact] | None = None,
    *,
    fluency: bool = True,
    max_new_tokens: int = 30,
) -> EditEvaluation:
    """Measure ``facts`` (default: the edit's own) before and with the edit; the model ends unchanged."""
    if edit.is_applied:
        raise InputError("undo the edit first: evaluate_edit measures the model before and after applying it")
    if edit.key != model.key:
        raise InputError(f"this edit was made for {edit.key}, not {model.key}")
    facts = list(edit.facts if facts is None else facts)
    if not facts:
        raise InputError("give at least one fact to evaluate")
    before = fact_scores(model, facts, fluency=fluency, max_new_tokens=max_new_tokens)
    with edit.applied(model):
        after = fact_scores(model, facts, fluency=fluency, max_new_tokens=max_new_tokens)
    return EditEvaluation(model.name, edit.method, list(edit.layers), facts, before, after, edit)


def _share(pairs: list[tuple[float, float]], new_wins: bool) -> float | None:
    if not pairs:
        return None
    return sum((new > true) == new_wins for new, true in pairs) / len(pairs)


def _margin(pairs: list[tuple[float, float]], sign: int) -> float | None:
    if not pairs:
        return None
    return sum(sign * (new - true) for new, true in pairs) / len(pairs)
