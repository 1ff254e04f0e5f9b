"""Training a transcoder set and measuring it in one call, and the sets a model has in the store: the results
the ``glasslab transcoders`` commands and the workbench's "Build transcoders" job answer with.

``train_transcoder_set`` is ``train_transcoders`` with its evaluation wired in: the finished set is measured
with ``evaluate_transcoders`` on the training corpus's ``test`` split before it is saved, and the evaluation is
written into ``training.json`` beside the set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...dictionaries.transcoder_set import TranscoderSet
from ...dictionaries.transcoder_train import TranscoderTrainConfig, train_transcoders
from ...model.model import Model
from ...store import TRANSCODERS, list_artifacts
from ...views.explanations import explanation
from ...views.figures import Bars, Figure
from ...views.result import Result
from .transcoders import TranscoderEvaluation, evaluate_transcoders

if TYPE_CHECKING:
    from ...cluster import ClusterSpec


@dataclass(frozen=True)
class TrainedTranscoders(Result):
    """A finished training: where the set is, its training record (spread into the JSON as ``training.json``
    keeps it) and its held-out evaluation."""

    kind = "transcoder_training"
    json_keys = ("model", "path", "training", "evaluation")
    json_spread = frozenset({"training"})

    path: Path
    model: str
    training: dict[str, Any]
    evaluation: dict[str, Any] | None

    def figure(self) -> Figure:
        """The held-out evaluation's figure, or each layer's last training FVE when it was not evaluated."""
        if self.evaluation:
            return TranscoderEvaluation.from_dict(self.evaluation).figure()
        layers = self.training["per_layer"]
        return Figure(
            title=f"Transcoders trained for {self.model}",
            panels=[
                Bars(
                    "Fraction of variance explained on the last training batch",
                    [f"layer {layer}" for layer in layers],
                    [(facts["final"] or {}).get("fve", float("nan")) for facts in layers.values()],
                    "fraction",
                )
            ],
            **explanation(self.kind),
        )


@dataclass(frozen=True)
class TranscoderSets(Result):
    """The transcoder sets saved in the store for one model, each with its summary as saved."""

    kind = "transcoder_sets"

    model: str
    n_layers: int
    sets: list[dict[str, Any]]


def train_transcoder_set(
    model: Model,
    config: TranscoderTrainConfig,
    *,
    name: str | None = None,
    out: str | Path | None = None,
    fresh: bool = False,
    evaluate_tokens: int = 16384,
    evaluate_loss_tokens: int = 2048,
    on_step: Callable[[int, dict[int, dict[str, float]]], None] | None = None,
    on_evaluate: Callable[[], None] | None = None,
    command: str | None = None,
    cluster: str | ClusterSpec | None = None,
    workers: int | None = None,
    worker_gpus: float = 0.0,
) -> TrainedTranscoders:
    """Train ``config``'s transcoders (``train_transcoders``; ``cluster``: data-parallel on Ray from the harvest
    ``config.activations``), evaluate them on ``evaluate_tokens`` held-out tokens of ``config.corpus`` (none:
    not evaluated; here) and save both; ``on_evaluate()`` runs as the evaluation starts."""

    def evaluate(transcoders: TranscoderSet) -> dict[str, Any] | None:
        if not evaluate_tokens:
            return None
        if on_evaluate is not None:
            on_evaluate()
        measured = evaluate_transcoders(
            model,
            transcoders,
            corpus=config.corpus,
            tokens=evaluate_tokens,
            loss_tokens=evaluate_loss_tokens,
            seq_len=config.seq_len,
        )
        return measured.to_dict()

    cluster_options = dict(cluster=cluster, workers=workers, worker_gpus=worker_gpus)
    run = train_transcoders(
        model, config, name=name, out=out, evaluate=evaluate, fresh=fresh, on_step=on_step, command=command,
        **cluster_options,
    )  # fmt: skip
    return TrainedTranscoders(run.path, model.name, run.training, run.evaluation)


def transcoder_sets(model: Model) -> TranscoderSets:
    """The sets in the store for ``model`` (what ``TranscoderSet.load`` and ``glasslab graph -t`` can name)."""
    sets = [artifact.to_dict() for artifact in list_artifacts(TRANSCODERS, model.key)]
    return TranscoderSets(model.name, model.n_layers, sets)
