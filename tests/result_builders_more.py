"""Results of editing and SAE training on the result protocol, built on tiny models (shared by the protocol
tests; kept apart from result_builders.py so each file stays short)."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from glasslab.dictionaries.train import TrainConfig
from glasslab.methods.editing import Fact, causal_trace, evaluate_edit, key_statistics, rome
from glasslab.methods.features.estimate import estimate_training
from glasslab.methods.features.evaluate import evaluate_sae
from glasslab.methods.features.training import train_sae
from glasslab.model.model import Model

from .tiny import WORDS

FACT = Fact(
    "the cat", "{} sat on the", " mat", " park", paraphrases=("when the cat sat on the",), neighbours=("a dog",)
)


def _documents(n: int = 40) -> list[str]:
    rng = random.Random(0)
    return [" ".join(rng.choice(WORDS) for _ in range(40)) for _ in range(n)]


def more_builders(model: Model, corpus: str, folder: Path) -> dict[str, Callable[[], object]]:
    """Result class name -> a function building one real result of it (editing and SAE training)."""
    stats = key_statistics(model, [0], corpus=corpus, split=None, tokens=400, seq_len=16, cache=False)[0]
    edit = rome(model, FACT, layer=0, stats=stats, prefixes=[""], steps=2)
    config = TrainConfig("blocks.1.resid_post", expansion=2, k=4, tokens=4 * 64, batch_size=64, seq_len=16)

    def trained():  # not evaluated: its figure is the training curve (evaluated, it shows the SAEEvaluation's)
        return train_sae(model, config, out=folder / "trained-sae", documents=_documents(), evaluate_tokens=0)

    return {
        "KeyStats": lambda: stats,
        "Edit": lambda: edit,
        "EditEvaluation": lambda: evaluate_edit(model, edit, fluency=True, max_new_tokens=4),
        "CausalTrace": lambda: causal_trace(model, "the cat sat on the", "the cat", samples=2, kinds=("resid", "mlp")),
        "TrainingEstimate": lambda: estimate_training(model, config, evaluate_tokens=64, documents=_documents()),
        "SAEEvaluation": lambda: evaluate_sae(
            model, trained().load(), tokens=64, loss_tokens=32, seq_len=16, documents=_documents()
        ),
        "TrainedSAE": trained,
    }
