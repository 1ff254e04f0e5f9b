"""Train an SAE and measure it on held-out text: the dictionaries layer's training job
(``glasslab.dictionaries.train``) with this layer's evaluation (``evaluate.py``) run before it is saved."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...dictionaries import SAE
from ...dictionaries.files import load_sae_folder
from ...dictionaries.train import TrainConfig, TrainingCancelled, train_dictionary
from ...model.model import Model
from ...views.explanations import explanation
from ...views.figures import Bars, Figure
from ...views.result import Result
from .evaluate import SAEEvaluation, evaluate_sae

if TYPE_CHECKING:
    from ...cluster import ClusterSpec

__all__ = ["TrainConfig", "TrainedSAE", "TrainingCancelled", "train_sae"]


@dataclass(frozen=True)
class TrainedSAE(Result):
    """A finished training: where the SAE is, how it was trained and how good it is on held-out text (its JSON
    spreads the training record, as ``training.json`` keeps it, between the path and the evaluation)."""

    kind = "sae_training"
    json_keys = ("model", "path", "training", "evaluation")
    json_spread = frozenset({"training"})

    path: Path
    model: str
    config: TrainConfig
    training: dict[str, Any]
    evaluation: dict[str, Any] | None

    def load(self) -> SAE:
        return load_sae_folder(self.path)

    def figure(self) -> Figure:
        """The held-out evaluation's figure, or the training curve when training was not evaluated."""
        if self.evaluation:
            return SAEEvaluation.from_dict(self.evaluation).figure()
        history = self.training["history"]
        return Figure(
            title=f"SAE training at {self.config.hook}",
            panels=[
                Bars(
                    "Fraction of variance explained on training batches",
                    [f"{row['tokens']:,} tokens" for row in history],
                    [row["fve"] for row in history],
                    "fraction",
                )
            ],
            **explanation(self.kind),
        )


def train_sae(
    model: Model,
    config: TrainConfig,
    *,
    name: str | None = None,
    out: str | Path | None = None,
    documents: Iterable[str] | None = None,
    evaluate_tokens: int = 32768,
    evaluate_loss_tokens: int = 2048,
    checkpoint_every: int = 100,
    fresh: bool = False,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    command: str | None = None,
    cluster: str | ClusterSpec | None = None,
    workers: int | None = None,
    worker_gpus: float = 0.0,
) -> TrainedSAE:
    """Train an SAE on ``config.hook`` of ``model`` and save it (SAELens layout) to the store or ``out``.

    ``documents`` overrides the corpus text (tests); ``on_step(step, metrics)`` is called after each step
    (raise KeyboardInterrupt in it to cancel). An existing checkpoint of the same name and config is
    resumed unless ``fresh``. After training, the SAE is evaluated on ``evaluate_tokens`` held-out tokens
    of the corpus's test split (``evaluate_loss_tokens`` for the losses; 0 skips it) and the metrics are
    written beside it in ``training.json``. ``cluster`` (``local``, ``auto`` or an address) trains
    data-parallel on ``workers`` Ray Train workers with ``worker_gpus`` each (``glasslab.dictionaries.parallel``;
    the evaluation runs here); ``on_step`` then runs on every worker.
    """

    def evaluation(sae: SAE) -> dict[str, Any] | None:
        if not evaluate_tokens:
            return None
        return evaluate_sae(
            model,
            sae,
            corpus=config.corpus,
            tokens=evaluate_tokens,
            loss_tokens=evaluate_loss_tokens,
            seq_len=config.seq_len,
        ).to_dict()

    run = train_dictionary(
        model,
        config,
        name=name,
        out=out,
        documents=documents,
        evaluate=evaluation,
        checkpoint_every=checkpoint_every,
        fresh=fresh,
        on_step=on_step,
        command=command,
        cluster=cluster,
        workers=workers,
        worker_gpus=worker_gpus,
    )
    return TrainedSAE(run.path, model.name, config, run.training, run.evaluation)
