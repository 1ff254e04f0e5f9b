"""What ``compare_models`` returns: the per-measure totals and the sequences and positions that changed most.

Kept apart from the measuring in ``models`` so each module has one job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ...views.explanations import explanation
from ...views.figures import Bars, Figure, Heatmap
from ...views.result import Record, Result
from .result import Change, finite


@dataclass(frozen=True)
class SequenceChange(Record):
    """One sequence (prompt) and how much the models' predictions on it differ."""

    index: int
    text: str
    kl: float  # mean over its positions
    loss_a: float
    loss_b: float


@dataclass(frozen=True)
class PositionChange(Record):
    """One position where the next-token predictions differ most."""

    sequence: int
    position: int
    context: str  # the text up to and including the position (its end)
    kl: float
    top_a: str
    top_b: str


@dataclass(frozen=True)
class ModelComparison(Result):
    kind = "compare_models"
    json_keys = (
        "model",
        "model_a",
        "model_b",
        "source",
        "sequences",
        "tokens",
        "cka",
        "kl",
        "loss_a",
        "loss_b",
        "head_distance",
        "top_heads",
        "top_sequences",
        "top_positions",
        "notes",
    )

    model_a: str
    model_b: str
    source: str
    sequences: int
    tokens: int  # real tokens compared
    layers: list[tuple[int, int]]  # (layer of A, layer of B) per CKA value
    cka: list[float]
    kl: float  # mean KL(A || B) per position, nats
    loss_a: float
    loss_b: float
    head_distance: list[list[float]] | None  # [layer][head] mean TV distance; None if shapes differ
    top_heads: list[Change]
    top_sequences: list[SequenceChange]
    top_positions: list[PositionChange]
    notes: list[str] = field(default_factory=list)

    def _json_model(self) -> str:
        return self.model_a  # readers that show one model name show A's

    def _json_cka(self) -> list[dict]:
        return [
            {"layer_a": la, "layer_b": lb, "cka": finite(c)} for (la, lb), c in zip(self.layers, self.cka, strict=True)
        ]

    def figure(self) -> Figure:
        panels: list[Bars | Heatmap] = [
            Bars(
                "representation similarity per layer (linear CKA of resid_post; 1 = same up to rotation and scale)",
                [f"A L{la} / B L{lb}" for la, lb in self.layers],
                [c if math.isfinite(c) else 0.0 for c in self.cka],
                "CKA",
            )
        ]
        if self.head_distance is not None:
            panels.append(
                Heatmap(
                    "how much each head's attention changed (mean total-variation distance)",
                    self.head_distance,
                    [f"L{layer}" for layer in range(len(self.head_distance))],
                    [f"H{h}" for h in range(len(self.head_distance[0]))],
                    "layer",
                    "head",
                    "TV distance (0 = same, 1 = disjoint)",
                    cell_text=[[f"{v:.2f}" for v in row] for row in self.head_distance],
                )
            )
        if self.top_sequences:
            panels.append(
                Bars(
                    "sequences whose predictions changed most (mean KL)",
                    [s.text[:40] for s in self.top_sequences],
                    [s.kl for s in self.top_sequences],
                    "nats",
                    hover=[f"{s.text} | loss A {s.loss_a:.3f}, B {s.loss_b:.3f}" for s in self.top_sequences],
                )
            )
        if self.top_positions:
            panels.append(
                Bars(
                    "positions whose next-token prediction changed most (KL)",
                    [f"…{p.context[-30:]!r}: {p.top_a!r}->{p.top_b!r}" for p in self.top_positions],
                    [p.kl for p in self.top_positions],
                    "nats",
                )
            )
        extra = {
            "A": self.model_a,
            "B": self.model_b,
            "text": f"{self.source}, {self.sequences} sequences, {self.tokens} tokens",
            "loss": f"A {self.loss_a:.4f}, B {self.loss_b:.4f} nats/token",
            "KL(A || B)": f"{self.kl:.4f} nats/position",
        }
        for i, note in enumerate(self.notes):
            extra[f"note {i + 1}"] = note
        return Figure(
            f"{self.model_a} vs {self.model_b}",
            panels,
            **explanation("compare_models"),
            extra=extra,
        )
