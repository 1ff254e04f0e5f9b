"""How long a transcoder-set training will take on this machine, measured rather than guessed.

The training's time is the harvest (one forward pass through every trained layer per batch of
sequences) plus the steps (one step per layer each); both are measured by running the real trainer on a
probe of the planned training (the same layers, kind, width, k, batch size and forward batches; a
training batch and at least three forward passes of activations, and a few steps, saved to a temporary
folder) and scaled to the planned sizes. Per-pass and per-step times are medians, so the first pass's
and step's warm-up is not multiplied by hundreds. The harvest is counted as ``min(tokens,
harvest_tokens)`` rows: an upper bound when the corpus holds fewer tokens (the buffer then reuses what it
read). Reading the text and the held-out evaluation are not part of the estimate.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from itertools import pairwise
from pathlib import Path
from typing import Any, ClassVar

from ..errors import InputError
from ..model.model import Model
from ..views.explanations import explanation
from ..views.figures import Bars, Figure
from ..views.result import Result
from .activations import rows_per_sequence
from .transcoder_train import TranscoderTrainConfig, train_transcoders


class _TimedRuns:
    """The model, with the wall time and sequences of each forward pass recorded."""

    def __init__(self, model: Model) -> None:
        self._model = model
        self.passes: list[tuple[float, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def run(self, prompts, **options):
        start = time.perf_counter()
        try:
            return self._model.run(prompts, **options)
        finally:
            self.passes.append((time.perf_counter() - start, len(prompts)))


@dataclass(frozen=True)
class TranscoderTrainingEstimate(Result):
    """The planned training's time, in parts, from what the probe measured."""

    kind: ClassVar[str] = "transcoder_training_estimate"
    json_keys: ClassVar[tuple[str, ...]] = (
        "seconds",
        "harvest_s",
        "train_s",
        "fixed_s",
        "tokens_per_s",
        "layers",
        "steps",
        "tokens",
        "harvest_sequences",
        "sequence_s",
        "step_s",
        "probe_s",
    )

    layers: int
    steps: int
    tokens: int  # tokens trained (steps x batch size)
    harvest_sequences: int
    sequence_s: float  # measured: one sequence through every trained layer
    step_s: float  # measured: one step of every layer's transcoder
    fixed_s: float  # measured: the rest of the probe (set-up, saving)
    probe_s: float

    @property
    def harvest_s(self) -> float:
        return self.sequence_s * self.harvest_sequences

    @property
    def train_s(self) -> float:
        return self.step_s * self.steps

    @property
    def seconds(self) -> float:
        return self.fixed_s + self.harvest_s + self.train_s

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else math.nan

    def figure(self) -> Figure:
        parts = ["harvest", "training", "set-up and saving"]
        bars = Bars("Estimated time", parts, [self.harvest_s, self.train_s, self.fixed_s], "seconds")
        return Figure(f"About {self.seconds / 60:.0f} minutes", [bars], **explanation(self.kind))

    def _json_seconds(self) -> float:
        return round(self.seconds, 1)

    def _json_harvest_s(self) -> float:
        return round(self.harvest_s, 1)

    def _json_train_s(self) -> float:
        return round(self.train_s, 1)

    def _json_fixed_s(self) -> float:
        return round(self.fixed_s, 1)

    def _json_tokens_per_s(self) -> float:
        return round(self.tokens_per_s, 1)

    def _json_probe_s(self) -> float:
        return round(self.probe_s, 1)


def estimate_transcoder_training(
    model: Model, config: TranscoderTrainConfig, *, documents=None, probe_steps: int = 4
) -> TranscoderTrainingEstimate:
    """The time ``train_transcoders(model, config)`` will take here (without reading the text or evaluating)."""
    if probe_steps < 2:
        raise InputError(f"the probe needs at least 2 steps to time one, got {probe_steps}")
    layers = config.layers_of(model)
    # At least three forward passes, so the median is not the first (cold) one.
    harvest = max(config.batch_size, 3 * config.model_batch * rows_per_sequence(model, config.seq_len))
    probe = replace(config, tokens=config.batch_size * probe_steps, harvest_tokens=harvest, buffer_tokens=harvest)
    timed = _TimedRuns(model)
    step_ends: list[float] = []
    with tempfile.TemporaryDirectory(prefix="glasslab-estimate-") as tmp:
        start = time.perf_counter()
        train_transcoders(
            timed,  # type: ignore[arg-type]
            probe,
            name="estimate",
            out=Path(tmp) / "set",
            documents=documents,
            checkpoint_every=0,
            fresh=True,
            on_step=lambda _step, _metrics: step_ends.append(time.perf_counter()),
        )
        probe_s = time.perf_counter() - start
    step_s = statistics.median(b - a for a, b in pairwise(step_ends))
    sequence_s = statistics.median(seconds / max(1, sequences) for seconds, sequences in timed.passes)
    rows = min(config.tokens, config.harvest_tokens or config.tokens)
    sequences = math.ceil(math.ceil(rows / rows_per_sequence(model, config.seq_len)) / config.model_batch)
    fixed_s = max(0.0, probe_s - sum(seconds for seconds, _ in timed.passes) - step_s * probe_steps)
    return TranscoderTrainingEstimate(
        layers=len(layers),
        steps=config.steps,
        tokens=config.steps * config.batch_size,
        harvest_sequences=sequences * config.model_batch,
        sequence_s=sequence_s,
        step_s=step_s,
        fixed_s=fixed_s,
        probe_s=probe_s,
    )
