"""Results of input attribution: one method's scores per prompt token."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ...views.explanations import explanation, note
from ...views.figures import Bars, Figure, Heatmap
from ...views.result import Result


@dataclass(frozen=True)
class MethodOutput:
    """What a method function returns before it is wrapped into a result."""

    scores: torch.Tensor  # [players] float64, one per attributed position
    evaluations: int  # batch rows of forward passes (a forward+backward row counts as one)
    completeness_error: float | None = None
    stderr: torch.Tensor | None = None
    details: dict[str, float | int | str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class InputAttribution(Result):
    """How much each prompt token contributed to the target, by one method.

    ``scores[i]`` belongs to ``tokens[positions[i]]``; a leading BOS gets no score (see prepared.py).
    Signed methods (gradient x input, integrated gradients, SHAP, occlusion) give contributions in the
    target's units: positive pushes the target up. Unsigned ones (saliency, attention rollout and flow,
    gradient-weighted attention) give importance only.
    """

    kind = "input_attribution"

    model: str
    prompt: str
    method: str
    label: str
    about: str
    tokens: list[str]
    positions: list[int]
    scores: list[float]
    signed: bool
    target: dict
    full_value: float  # f(prompt)
    baseline_value: float  # f(prompt with every attributed token at the baseline)
    baseline: str
    evaluations: int
    completeness_error: float | None = None  # |sum(scores) - (f(prompt) - f(baseline))| where it should be 0
    stderr: list[float] | None = None
    details: dict[str, float | int | str | None] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def attributed_tokens(self) -> list[str]:
        return [self.tokens[p] for p in self.positions]

    def figure(self) -> Figure:
        labels = [f"{p} {t!r}" for p, t in zip(self.positions, self.attributed_tokens, strict=True)]
        hover = [
            f"{label}: {s:+.4g}" + ("" if self.stderr is None else f" ± {e:.2g}")
            for label, s, e in zip(labels, self.scores, self.stderr or self.scores, strict=True)
        ]
        strip = Heatmap(
            "the prompt, coloured by score",
            [self.scores],
            [self.label],
            [repr(t) for t in self.attributed_tokens],
            col_title="prompt token",
            value_label="score",
            cell_text=[[f"{s:.2g}" for s in self.scores]],
            hover=[hover],
            diverging=self.signed,
        )
        bars = Bars(f"{self.label} per token", labels, self.scores, "score", hover=hover)
        extra = {
            "target": self.target["description"],
            "f(prompt)": f"{self.full_value:.4g}",
            f"f(baseline '{self.baseline}')": f"{self.baseline_value:.4g}",
            "model evaluations": str(self.evaluations),
        }
        if self.completeness_error is not None:
            extra["completeness error"] = f"{self.completeness_error:.3g}"
        return Figure(
            f"{self.model}: {self.label} for {self.target['description']}",
            [strip, bars],
            **explanation(
                "input_attribution",
                about=self.about,
                bos=note(
                    "input_attribution", "bos_fixed" if self.positions and self.positions[0] == 1 else "every_token"
                ),
                scores=note("input_attribution", "signed" if self.signed else "unsigned"),
            ),
            extra=extra,
        )
