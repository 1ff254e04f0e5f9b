"""How long an SAE training will take on this machine, measured rather than guessed.

A training's time is a fixed part (setting up, saving), reading and tokenizing the text, the forward
passes that read activations (the harvest, then the held-out evaluation), in proportion to the sequences
run, and the training steps, in proportion to their number. ``estimate_training`` reads and tokenizes
all the text the training will read twice: the first read counts its sequences and warms what a
training started right after it finds warm (files in the OS's cache, modules imported, the tokenizer's
first calls: work the real run does not repeat), the second is timed in full. It then runs the real
trainer once on a probe of the planned training (the same hook, width, k, batch size and forward
batches; one training batch of activations and a few steps, saved to a temporary folder), times its
forward passes and its steps separately, and scales each to the planned sizes; the time the probe
spends fetching documents is taken out of its fixed part, as the text is counted in full already.
Per-pass and per-step times are medians, so the first pass's and step's warm-up is not multiplied by
hundreds. The probe costs about one training batch's worth of forward passes and a few steps. Held-out
losses (four full passes each) are not part of the estimate.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from itertools import islice, pairwise
from pathlib import Path
from typing import Any

from ...data import load_corpus, packed_sequences
from ...dictionaries.activations import rows_per_sequence
from ...dictionaries.fit import hook_width
from ...dictionaries.train import TrainConfig
from ...errors import InputError
from ...model.model import Model
from ...views.result import Result
from .training import train_sae

EVALUATE_BATCH = 8  # sequences per forward pass in evaluate_sae (its default)


class _TimedRuns:
    """The model, with the wall time and the sequences of each forward pass recorded; everything else is
    the model's own."""

    def __init__(self, model: Model) -> None:
        self._model = model
        self.passes: list[tuple[float, int]] = []  # (seconds, sequences) per forward pass

    @property
    def seconds(self) -> float:
        return sum(seconds for seconds, _ in self.passes)

    @property
    def sequences(self) -> int:
        return sum(sequences for _, sequences in self.passes)

    def sequence_s(self) -> float:
        """One sequence's time: the median over the passes, so a first pass's warm-up (new shapes, memory)
        does not count for the hundreds of passes of a training."""
        return statistics.median(seconds / max(1, sequences) for seconds, sequences in self.passes)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def run(self, prompts, **options):
        start = time.perf_counter()
        try:
            return self._model.run(prompts, **options)
        finally:
            self.passes.append((time.perf_counter() - start, len(prompts)))


_ROUNDED = frozenset({"seconds", "harvest_s", "train_s", "evaluate_s", "text_s", "fixed_s", "probe_s"})


@dataclass(frozen=True)
class TrainingEstimate(Result):
    """The planned training's time, in parts, from what the probe measured (seconds to 0.1 s in its JSON, but
    the measured rates)."""

    kind = "sae_training_estimate"
    json_keys = (
        "hook", "seconds", "harvest_s", "train_s", "evaluate_s", "text_s", "fixed_s", "steps", "harvest_sequences",
        "evaluate_sequences", "sequence_s", "step_s", "probe_s",
    )  # fmt: skip

    hook: str
    steps: int
    harvest_sequences: int  # forward passes' sequences to read the training activations
    evaluate_sequences: int  # and the held-out evaluation's
    text_s: float  # measured: reading and tokenizing all that text
    sequence_s: float  # measured: one sequence through the model up to the hook
    step_s: float  # measured: one training step
    fixed_s: float  # measured: the rest of the probe (set-up, saving)
    probe_s: float  # how long the measurement took

    @property
    def harvest_s(self) -> float:
        return self.sequence_s * self.harvest_sequences

    @property
    def train_s(self) -> float:
        return self.step_s * self.steps

    @property
    def evaluate_s(self) -> float:
        return self.sequence_s * self.evaluate_sequences

    @property
    def seconds(self) -> float:
        return self.fixed_s + self.text_s + self.harvest_s + self.train_s + self.evaluate_s

    def _value_for_json(self, key: str) -> Any:
        value = super()._value_for_json(key)
        return round(value, 1) if key in _ROUNDED else value


def estimate_training(
    model: Model,
    config: TrainConfig,
    *,
    evaluate_tokens: int = 0,
    documents: Iterable[str] | None = None,
    probe_steps: int = 4,
) -> TrainingEstimate:
    """The time ``train_sae(model, config, evaluate_tokens=..., evaluate_loss_tokens=0)`` will take here.

    ``documents`` (re-iterable) stand in for the corpus's train split, as in ``train_sae``; the evaluation
    reads the corpus's test split. The sequences both will run are counted by tokenizing as far as they
    go (the whole train split when ``config.harvest_tokens`` is None).
    """
    if probe_steps < 2:
        raise InputError(f"the probe needs at least 2 steps to time one, got {probe_steps}")
    hook_width(model, config.hook, config.head_index)  # a clear error for a hook an SAE cannot read
    train_docs = documents if documents is not None else load_corpus(config.corpus, split="train")
    test_docs = load_corpus(config.corpus, split="test")
    evaluate_rows = max(evaluate_tokens, rows_per_sequence(model, config.seq_len)) if evaluate_tokens else 0
    # A first, untimed read warms what a training started right after it finds warm; the second is timed.
    harvest_seqs, evaluate_seqs = _count_sequences(model, config, train_docs, test_docs, evaluate_rows)
    if harvest_seqs == 0:
        raise InputError("the corpus gave no tokens; give a corpus with some text")
    start = time.perf_counter()
    _count_sequences(model, config, train_docs, test_docs, evaluate_rows)
    text_s = time.perf_counter() - start

    probe = replace(
        config,
        tokens=config.batch_size * probe_steps,
        harvest_tokens=config.batch_size,
        buffer_tokens=config.batch_size,
    )
    timed, probe_text = _TimedRuns(model), _TimedText(train_docs)
    step_ends: list[float] = []
    with tempfile.TemporaryDirectory(prefix="glasslab-estimate-") as tmp:
        start = time.perf_counter()
        train_sae(
            timed,  # type: ignore[arg-type]
            probe,
            name=f"estimate-{uuid.uuid4().hex[:12]}",
            out=Path(tmp) / "sae",
            documents=probe_text,
            evaluate_tokens=1 if evaluate_tokens else 0,  # one evaluation batch: its set-up is part of fixed_s
            evaluate_loss_tokens=0,
            checkpoint_every=0,
            fresh=True,
            on_step=lambda _step, _metrics: step_ends.append(time.perf_counter()),
        )
        probe_s = time.perf_counter() - start
    step_s = statistics.median(b - a for a, b in pairwise(step_ends))
    # The probe's reading of the training text is in text_s already, with all the rest of that text.
    fixed_s = max(0.0, probe_s - timed.seconds - step_s * probe_steps - probe_text.seconds)
    return TrainingEstimate(
        hook=config.hook,
        steps=config.steps,
        harvest_sequences=harvest_seqs,
        evaluate_sequences=evaluate_seqs,
        text_s=text_s,
        sequence_s=timed.sequence_s(),
        step_s=step_s,
        fixed_s=fixed_s,
        probe_s=probe_s,
    )


def _count_sequences(
    model: Model, config: TrainConfig, train_docs: Iterable[str], test_docs: Iterable[str], evaluate_rows: int
) -> tuple[int, int]:
    """The sequences the training's harvest and its held-out evaluation (0 rows: none) will run."""
    harvest = _sequences_run(model, train_docs, config, config.harvest_tokens, config.model_batch)
    evaluate = _sequences_run(model, test_docs, config, evaluate_rows, EVALUATE_BATCH) if evaluate_rows else 0
    return harvest, evaluate


class _TimedText:
    """Documents, with the time spent reading them (in the iterator, not in the reader's own work)."""

    def __init__(self, documents: Iterable[str]) -> None:
        self._documents = documents
        self.seconds = 0.0

    def __iter__(self) -> Iterator[str]:
        documents = iter(self._documents)
        while True:
            start = time.perf_counter()
            try:
                document = next(documents)
            except StopIteration:
                return
            finally:
                self.seconds += time.perf_counter() - start
            yield document


def _sequences_run(model: Model, documents: Iterable[str], config: TrainConfig, rows: int | None, batch: int) -> int:
    """The sequences an activation stream runs to read ``rows`` rows (None: all): whole forward batches of
    ``batch`` sequences, or fewer where the text runs out. The text is read as far as the stream reads it:
    one batch further than it runs (it notices it has enough only when it asks for the next batch)."""
    rows_per_seq = rows_per_sequence(model, config.seq_len)
    wanted = None if rows is None else math.ceil(math.ceil(rows / rows_per_seq) / batch) * batch
    read = sum(
        1
        for _ in islice(packed_sequences(model, documents, config.seq_len), None if wanted is None else wanted + batch)
    )
    return read if wanted is None else min(read, wanted)
