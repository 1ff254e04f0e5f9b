"""What ``head_composition`` returns: the scores of every pair of heads, their baselines and the strongest
pairs; kept apart from the weight arithmetic in ``composition`` so each module has one job."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ...views.explanations import explanation
from ...views.figures import Bars, Figure, Heatmap
from ...views.result import Record, Result
from .result import finite

MODES: tuple[str, ...] = ("q", "k", "v")
MODE_NAMES = {"q": "Q-composition", "k": "K-composition", "v": "V-composition"}


@dataclass(frozen=True)
class CompositionPair(Record):
    json_keys = ("mode", "writer", "reader", "score", "z", "rank", "robust_z")

    mode: str
    writer: tuple[int, int]  # (layer, head)
    reader: tuple[int, int]
    score: float
    z: float  # (score - random baseline mean) / random baseline std
    rank: int  # 1 = the strongest of all pairs of this model in this mode
    robust_z: float  # (score - median over this model's pairs) / (1.4826 * their median absolute deviation)
    writer_roles: list[str] = field(default_factory=list)
    reader_roles: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        (wl, wh), (rl, rh) = self.writer, self.reader
        return f"L{wl}H{wh} -> L{rl}H{rh}"

    def _json_writer(self) -> dict:
        return {"layer": self.writer[0], "head": self.writer[1], "roles": self.writer_roles}

    def _json_reader(self) -> dict:
        return {"layer": self.reader[0], "head": self.reader[1], "roles": self.reader_roles}


@dataclass(frozen=True)
class Composition(Result):
    """Composition scores ``scores[mode][wl, wh, rl, rh]`` (NaN unless ``wl < rl``) with a random baseline."""

    kind = "composition"
    json_keys = (
        "model",
        "n_layers",
        "n_heads",
        "heads",
        "scores",
        "baseline",
        "spread",
        "top",
        "roles",
        "previous_token_to_induction",
    )

    model: str
    n_layers: int
    n_heads: int
    scores: dict[str, torch.Tensor]  # mode -> [layer, head, layer, head], float64
    baseline: dict[str, tuple[float, float, float]]  # mode -> (mean, std, max) over random draws
    n_random: int
    spread: dict[str, tuple[float, float, int]]  # mode -> (median, median absolute deviation, pairs) of this model
    top: dict[str, list[CompositionPair]]  # mode -> strongest pairs, best first
    roles: dict[tuple[int, int], list[str]] = field(default_factory=dict)  # head -> its roles, if given
    role_pairs: list[CompositionPair] = field(default_factory=list)  # previous-token -> induction, K-comp

    def score(self, mode: str, writer: tuple[int, int], reader: tuple[int, int]) -> float:
        return float(self.scores[mode][writer[0], writer[1], reader[0], reader[1]])

    def _json_heads(self) -> list[str]:
        return [f"L{lay}H{h}" for lay in range(self.n_layers) for h in range(self.n_heads)]

    def _json_scores(self) -> dict[str, list[list[float | None]]]:
        """Every head (row) into every head (column), flattened layer by layer; NaN (no path) becomes None."""
        flat = {mode: self.scores[mode].reshape(self.n_layers * self.n_heads, -1).tolist() for mode in MODES}
        return {mode: [[finite(v) for v in row] for row in rows] for mode, rows in flat.items()}

    def _json_baseline(self) -> dict[str, dict]:
        return {
            mode: {"mean": m, "std": s, "max": x, "draws": self.n_random} for mode, (m, s, x) in self.baseline.items()
        }

    def _json_spread(self) -> dict[str, dict]:
        return {mode: {"median": m, "mad": d, "pairs": n} for mode, (m, d, n) in self.spread.items()}

    def _json_roles(self) -> dict[str, list[str]]:
        return {f"L{lay}H{h}": r for (lay, h), r in self.roles.items()}

    def _json_previous_token_to_induction(self) -> list[CompositionPair]:
        return self.role_pairs

    def figure(self) -> Figure:
        labels = [f"L{lay}H{h}" for lay in range(self.n_layers) for h in range(self.n_heads)]
        writers = labels[: (self.n_layers - 1) * self.n_heads]
        readers = labels[self.n_heads :]
        panels: list[Heatmap | Bars] = []
        for mode in MODES:
            flat = self.scores[mode].reshape(len(labels), len(labels))
            block = flat[: len(writers), self.n_heads :]
            panels.append(
                Heatmap(
                    f"{MODE_NAMES[mode]}: earlier head (row) into later head (column)",
                    [[v if v == v else 0.0 for v in row] for row in block.tolist()],
                    writers,
                    readers,
                    "writer head",
                    "reader head",
                    f"score (random baseline {self.baseline[mode][0]:.3f} ± {self.baseline[mode][1]:.3f})",
                )
            )
            pairs = self.top[mode]
            panels.append(
                Bars(
                    f"strongest {MODE_NAMES[mode]} pairs",
                    [p.label for p in pairs],
                    [p.score for p in pairs],
                    "score",
                    hover=[
                        f"{p.label}: {p.score:.4f}, rank {p.rank} of {self.spread[mode][2]} pairs, robust z "
                        f"{p.robust_z:.1f} within the model, {p.z:.1f} std from random weights"
                        + (f"; writer {', '.join(p.writer_roles)}" if p.writer_roles else "")
                        + (f"; reader {', '.join(p.reader_roles)}" if p.reader_roles else "")
                        for p in pairs
                    ],
                )
            )
        extra = {
            f"{mode} random baseline": f"mean {m:.4f}, std {s:.4f}, max {x:.4f} over {self.n_random} draws"
            for mode, (m, s, x) in self.baseline.items()
        }
        for mode, (median, mad, n) in self.spread.items():
            extra[f"{mode} in this model"] = f"median {median:.4f}, MAD {mad:.4f} over {n} pairs"
        if self.role_pairs:
            best = self.role_pairs[0]
            extra["previous-token -> induction (K)"] = f"{best.label}: {best.score:.4f}"
        return Figure(
            f"{self.model}: how heads compose",
            panels,
            **explanation("composition"),
            extra=extra,
        )
