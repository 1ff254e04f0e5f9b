"""Results of probing and erasure: per-layer scores, JSON for the CLI and the app, figures for newcomers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...views.explanations import explanation
from ...views.figures import Bars, Figure, Heatmap
from ...views.result import Record, Result

if TYPE_CHECKING:
    from .erasure import ConceptEraser


def short_hook(hook: str) -> str:
    """``blocks.6.resid_post`` -> ``L6 resid_post`` (column labels)."""
    parts = hook.split(".", 2)
    return f"L{parts[1]} {parts[2]}" if parts[0] == "blocks" and len(parts) == 3 else hook


@dataclass(frozen=True)
class LayerProbe(Record):
    """Scores of one hook. Accuracies are means over cross-validation folds (test folds only)."""

    json_keys = (
        "hook",
        "layer",
        "features",
        "accuracy",
        "accuracy_std",
        "fold_accuracies",
        "seen_word_accuracy",
        "control_accuracy",
        "control_std",
        "selectivity",
    )

    hook: str
    layer: int | None
    features: int
    accuracy: float  # on held-out words when words repeat (grouped folds), else on random folds
    accuracy_std: float
    fold_accuracies: list[float]
    seen_accuracy: float  # the task on folds that share words: the control task's split
    control_accuracy: float
    control_std: float
    selectivity: float  # seen_accuracy - control_accuracy

    def _json_seen_word_accuracy(self) -> float:
        return self.seen_accuracy


@dataclass(frozen=True)
class Probing(Result):
    """Linear probes for one labelled dataset at each hook, with control tasks and baselines."""

    kind = "probe"
    json_keys = (
        "model",
        "dataset",
        "description",
        "examples",
        "classes",
        "class_counts",
        "word_types",
        "probe",
        "strength",
        "folds",
        "n_folds",
        "seed",
        "majority",
        "chance",
        "best_hook",
        "layers",
    )

    model: str
    dataset: str
    description: str
    examples: int
    classes: list[str]
    class_counts: list[int]
    word_types: int
    probe: str  # logistic or ridge
    strength: float
    folds: str  # "grouped" (each word type in one fold) or "random"
    n_folds: int
    seed: int
    majority: float  # accuracy of always answering the most frequent class
    chance: float  # 1 / number of classes
    layers: list[LayerProbe]
    # Where ``glasslab probe --save-vector`` saved the probe's direction as a steering vector (the command's
    # note reads it; not in the JSON, which describes the probes).
    saved_vector: str | None = None

    @property
    def best(self) -> LayerProbe:
        return max(self.layers, key=lambda p: p.accuracy)

    def at(self, hook: str) -> LayerProbe:
        for layer in self.layers:
            if layer.hook == hook:
                return layer
        raise KeyError(hook)

    def figure(self) -> Figure:
        labels = [short_hook(p.hook) for p in self.layers]
        held_out = "held-out words" if self.folds == "grouped" else "held-out examples"
        rows = [
            (f"accuracy ({held_out})", [p.accuracy for p in self.layers], [p.accuracy_std for p in self.layers]),
            ("accuracy (seen words)", [p.seen_accuracy for p in self.layers], None),
            ("control task accuracy", [p.control_accuracy for p in self.layers], [p.control_std for p in self.layers]),
            ("majority baseline", [self.majority] * len(self.layers), None),
        ]
        heatmap = Heatmap(
            "probe accuracy at each hook (test folds)",
            [values for _, values, _ in rows],
            [name for name, _, _ in rows],
            labels,
            col_title="hook",
            value_label="accuracy",
            cell_text=[[f"{v:.2f}" for v in values] for _, values, _ in rows],
            hover=[
                [
                    f"{name} at {hook}: {v:.3f}" + (f" ± {stds[i]:.3f} over folds" if stds else "")
                    for i, (hook, v) in enumerate(zip(labels, values, strict=True))
                ]
                for name, values, stds in rows
            ],
        )
        selectivity = Bars(
            "selectivity = seen-word accuracy - control accuracy",
            labels,
            [p.selectivity for p in self.layers],
            "selectivity",
            hover=[
                f"{short_hook(p.hook)}: task {p.seen_accuracy:.3f} - control {p.control_accuracy:.3f}"
                for p in self.layers
            ],
        )
        return Figure(
            f"{self.model}: {self.probe} probes for '{self.dataset}' ({' / '.join(self.classes)})",
            [heatmap, selectivity],
            **explanation("probe", description=self.description, held_out=held_out, n_folds=self.n_folds),
            extra={
                "examples": str(self.examples),
                "classes": ", ".join(f"{c} ({n})" for c, n in zip(self.classes, self.class_counts, strict=True)),
                "word types": str(self.word_types),
                "folds": f"{self.n_folds} ({self.folds})",
                "majority": f"{self.majority:.3f}",
            },
        )

    def _json_best_hook(self) -> str:
        return self.best.hook


@dataclass(frozen=True)
class DownstreamScore:
    """Probe accuracy at a later hook, with the concept erased earlier in the forward pass and without."""

    hook: str
    accuracy_clean: float
    accuracy_erased: float


@dataclass(frozen=True)
class Erasure(Result):
    """A LEACE eraser fitted at one hook, with what it did to probes and to the model's loss."""

    kind = "erasure"
    json_keys = (
        "model",
        "dataset",
        "method",
        "hook",
        "examples",
        "classes",
        "rank",
        "probe",
        "n_folds",
        "majority",
        "chance",
        "accuracy_before",
        "accuracy_before_std",
        "accuracy_after",
        "accuracy_after_std",
        "cross_covariance_before",
        "cross_covariance_after",
        "mean_squared_edit",
        "mean_squared_norm",
        "positions",
        "downstream",
        "neutral_texts",
        "loss_before",
        "loss_after",
    )
    method = "leace"  # the only eraser; named in the JSON so others can be added

    model: str
    dataset: str
    hook: str
    examples: int
    classes: list[str]
    rank: int  # dimensions of the erased subspace (at most classes - 1)
    probe: str
    n_folds: int
    majority: float
    chance: float
    accuracy_before: float
    accuracy_before_std: float
    accuracy_after: float  # eraser and probe fitted on the training folds, scored on the test fold
    accuracy_after_std: float
    cross_covariance_before: float  # Frobenius norm of Cov(activations, one-hot labels)
    cross_covariance_after: float
    mean_squared_edit: float  # E||r(x) - x||^2 on the dataset
    mean_squared_norm: float  # E||x - mean||^2, for scale
    positions: str  # where the intervention applies in the model: "all" or the positions
    downstream: list[DownstreamScore]
    neutral_texts: int
    loss_before: float | None  # mean next-token loss on neutral texts, without and with the intervention
    loss_after: float | None
    eraser: ConceptEraser = field(repr=False)

    def figure(self) -> Figure:
        panels: list[Heatmap | Bars] = [
            Bars(
                f"probe accuracy at {self.hook} (test folds)",
                ["before erasure", "after erasure", "majority baseline"],
                [self.accuracy_before, self.accuracy_after, self.majority],
                "accuracy",
                hover=[
                    f"before: {self.accuracy_before:.3f} ± {self.accuracy_before_std:.3f}",
                    f"after: {self.accuracy_after:.3f} ± {self.accuracy_after_std:.3f}",
                    f"always the most common class: {self.majority:.3f}",
                ],
            )
        ]
        if self.downstream:
            labels = [short_hook(d.hook) for d in self.downstream]
            panels.append(
                Heatmap(
                    "probe accuracy at later hooks, with the concept erased at " + short_hook(self.hook),
                    [[d.accuracy_clean for d in self.downstream], [d.accuracy_erased for d in self.downstream]],
                    ["clean run", "erased run"],
                    labels,
                    col_title="hook",
                    value_label="accuracy",
                    cell_text=[
                        [f"{d.accuracy_clean:.2f}" for d in self.downstream],
                        [f"{d.accuracy_erased:.2f}" for d in self.downstream],
                    ],
                )
            )
        extra = {
            "erased dimensions": str(self.rank),
            "cross-covariance": f"{self.cross_covariance_before:.3g} -> {self.cross_covariance_after:.2g}",
            "mean squared edit": f"{self.mean_squared_edit:.3g} (of {self.mean_squared_norm:.3g} total variance)",
            "applied at": f"{self.hook}, positions: {self.positions}",
        }
        if self.loss_before is not None and self.loss_after is not None:
            extra["loss on neutral texts"] = f"{self.loss_before:.3f} -> {self.loss_after:.3f} nats"
        return Figure(
            f"{self.model}: LEACE erasure of '{self.dataset}' at {self.hook}",
            panels,
            **explanation("erasure"),
            extra=extra,
        )
