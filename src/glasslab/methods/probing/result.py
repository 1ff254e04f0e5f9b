"""Results of probing and erasure: per-layer scores, JSON for the CLI and the app, figures for newcomers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...views.figures import Bars, Figure, Heatmap
from ...views.html import figure_html

if TYPE_CHECKING:
    from .erasure import ConceptEraser


def short_hook(hook: str) -> str:
    """``blocks.6.resid_post`` -> ``L6 resid_post`` (column labels)."""
    parts = hook.split(".", 2)
    return f"L{parts[1]} {parts[2]}" if parts[0] == "blocks" and len(parts) == 3 else hook


@dataclass(frozen=True)
class LayerProbe:
    """Scores of one hook. Accuracies are means over cross-validation folds (test folds only)."""

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

    def to_dict(self) -> dict:
        return {
            "hook": self.hook,
            "layer": self.layer,
            "features": self.features,
            "accuracy": self.accuracy,
            "accuracy_std": self.accuracy_std,
            "fold_accuracies": self.fold_accuracies,
            "seen_word_accuracy": self.seen_accuracy,
            "control_accuracy": self.control_accuracy,
            "control_std": self.control_std,
            "selectivity": self.selectivity,
        }


@dataclass(frozen=True)
class Probing:
    """Linear probes for one labelled dataset at each hook, with control tasks and baselines."""

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

    @property
    def best(self) -> LayerProbe:
        return max(self.layers, key=lambda p: p.accuracy)

    def at(self, hook: str) -> LayerProbe:
        for layer in self.layers:
            if layer.hook == hook:
                return layer
        raise KeyError(hook)

    def to_dict(self) -> dict:
        return {
            "kind": "probe",
            "model": self.model,
            "dataset": self.dataset,
            "description": self.description,
            "examples": self.examples,
            "classes": self.classes,
            "class_counts": self.class_counts,
            "word_types": self.word_types,
            "probe": self.probe,
            "strength": self.strength,
            "folds": self.folds,
            "n_folds": self.n_folds,
            "seed": self.seed,
            "majority": self.majority,
            "chance": self.chance,
            "best_hook": self.best.hook,
            "layers": [layer.to_dict() for layer in self.layers],
        }

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
            what_you_see=f"How well a linear probe reads the label ({self.description}) from the activations at "
            f"each hook, scored on {held_out} by {self.n_folds}-fold cross-validation, next to a control task "
            "that gives each word a random label, and the accuracy of always guessing the most common class.",
            how_to_read="Accuracy well above the majority baseline means the label is linearly readable there. "
            "Selectivity (task minus control, on folds that share words) is large when the probe reads the "
            "property rather than memorising words: a layer with high accuracy and low selectivity may only "
            "be telling words apart.",
            caveat="Readable is not used: a probe can find information the model never relies on. To test use, "
            "steer along the probe's direction or erase the concept (erase) and watch the model's behaviour.",
            extra={
                "examples": str(self.examples),
                "classes": ", ".join(f"{c} ({n})" for c, n in zip(self.classes, self.class_counts, strict=True)),
                "word types": str(self.word_types),
                "folds": f"{self.n_folds} ({self.folds})",
                "majority": f"{self.majority:.3f}",
            },
        )

    def _repr_html_(self) -> str:
        return figure_html(self.figure())


@dataclass(frozen=True)
class DownstreamScore:
    """Probe accuracy at a later hook, with the concept erased earlier in the forward pass and without."""

    hook: str
    accuracy_clean: float
    accuracy_erased: float


@dataclass(frozen=True)
class Erasure:
    """A LEACE eraser fitted at one hook, with what it did to probes and to the model's loss."""

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

    def to_dict(self) -> dict:
        return {
            "kind": "erasure",
            "model": self.model,
            "dataset": self.dataset,
            "method": "leace",
            "hook": self.hook,
            "examples": self.examples,
            "classes": self.classes,
            "rank": self.rank,
            "probe": self.probe,
            "n_folds": self.n_folds,
            "majority": self.majority,
            "chance": self.chance,
            "accuracy_before": self.accuracy_before,
            "accuracy_before_std": self.accuracy_before_std,
            "accuracy_after": self.accuracy_after,
            "accuracy_after_std": self.accuracy_after_std,
            "cross_covariance_before": self.cross_covariance_before,
            "cross_covariance_after": self.cross_covariance_after,
            "mean_squared_edit": self.mean_squared_edit,
            "mean_squared_norm": self.mean_squared_norm,
            "positions": self.positions,
            "downstream": [
                {"hook": d.hook, "accuracy_clean": d.accuracy_clean, "accuracy_erased": d.accuracy_erased}
                for d in self.downstream
            ],
            "neutral_texts": self.neutral_texts,
            "loss_before": self.loss_before,
            "loss_after": self.loss_after,
        }

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
            what_you_see="A linear probe's accuracy before and after removing the concept with LEACE (the "
            "smallest edit after which no linear probe can separate the classes), and, when the edit is made "
            "inside the model, how well probes at later layers still read the concept.",
            how_to_read="After erasure the accuracy should sit at the majority baseline. Later layers climbing back "
            "above it mean the model recomputes the concept from what was left; a small loss change on neutral "
            "text means the edit spared the model's other work.",
            caveat="LEACE removes linear information only: a non-linear probe may still find the concept, and the "
            "guarantee holds on the data the eraser was fitted on (held-out folds are shown so you can see how "
            "well it carries over).",
            extra=extra,
        )

    def _repr_html_(self) -> str:
        return figure_html(self.figure())
