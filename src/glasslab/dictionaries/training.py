"""Train any ``Dictionary`` on a stream of activation rows: one optimiser over the dictionary's own
parameters, and the architecture's ``loss`` and hooks for everything that differs between kinds.

Inputs are scaled so their mean squared norm is ``d_in`` (hyper-parameters then carry across models and
layers); ``finish_training`` folds the scale into the weights. A feature silent for ``dead_after_tokens``
rows counts as dead (losses such as AuxK revive it). Every step is a function of the state kept here,
the dictionary's parameters, Adam's moments and the rows' position, so checkpoints (``checkpoints.py``)
resume exactly.

The same step serves data-parallel training (``parallel.py``): every rank draws the same whole batch, takes
its equal slice of it and sums what it counts with the others (``Peers``); alone, the slice is the batch.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import torch

from ..errors import InputError
from .base import Dictionary, LossSettings, StepInput, StepOutput

T = TypeVar("T")


class TrainingPlan(LossSettings, Protocol):
    """The settings the trainer reads (``glasslab.dictionaries.train.TrainConfig`` has them all)."""

    hook: str
    lr: float
    seed: int
    batch_size: int
    buffer_tokens: int
    dead_after_tokens: int

    @property
    def steps(self) -> int: ...

    def lr_at(self, step: int) -> float: ...


Batch = torch.Tensor | tuple[torch.Tensor, torch.Tensor]
"""An autoencoder's rows [n, d_in], or a transcoder's (input [n, d_in], target [n, d_out]) pairs."""


class Rows(Protocol):
    """Where training batches come from (``glasslab.dictionaries.activations.ShuffleBuffer``; transcoders'
    rows are input/target pairs)."""

    def peek(self, n: int) -> Batch: ...

    def next_batch(self, n: int) -> Batch: ...


def split(rows: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(input, target or None) of a batch of rows."""
    return rows if isinstance(rows, tuple) else (rows, None)


def _scale_for(sample: torch.Tensor, what: str, kind: str) -> float:
    """The factor that makes ``sample``'s mean squared norm its width."""
    mean_sq = float(sample.pow(2).sum(-1).mean())
    if not mean_sq > 0:
        raise InputError(f"the activations at {what} are all zero; {kind} cannot be trained there")
    return math.sqrt(sample.shape[1] / mean_sq)


@dataclass
class TrainingState:
    """What the trainer keeps between steps (and in checkpoints) besides parameters and Adam's moments."""

    step: int = 0
    scale: float = 1.0  # multiply raw activations by this: mean squared norm becomes d_in
    target_scale: float | None = None  # the same for a transcoder's targets (None: an autoencoder)
    seconds: float = 0.0  # wall-clock training time so far (harvest included), summed over resumed sessions
    cpu_seconds: float = 0.0  # this process's CPU time over the same spans (load-independent)
    history: list[dict[str, float]] = field(default_factory=list)
    since_fired: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    fire_counts: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))


class Peers:
    """The processes training one dictionary together. Alone (this class): rank 0 of 1, the whole batch and
    nothing to sum. Data-parallel ranks (``parallel.DataParallelPeers``) each take an equal slice of every
    batch; every loss is a mean over its rows, so averaging the ranks' gradients gives the whole batch's."""

    rank: int = 0
    world: int = 1

    def agree(self, value: T) -> T:
        """Rank 0's ``value``, on every rank (e.g. which checkpoint to resume from)."""
        return value

    def replicate(self, dictionary: Dictionary, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Start sharing ``dictionary``'s gradients (called once its parameters are final: after a restore); a
        rank with a GPU moves the dictionary and ``optimizer``'s moments onto it."""

    def loss(self, dictionary: Dictionary, batch: StepInput) -> StepOutput:
        """This rank's loss on its slice; its backward pass leaves the ranks' mean gradient."""
        return dictionary.loss(batch)

    def total(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` summed over the ranks."""
        return values

    def share(self, batch: StepInput) -> StepInput:
        """This rank's equal slice of the whole batch (the batch itself when alone)."""
        n = batch.x.shape[0]
        rows = slice(self.rank * n // self.world, (self.rank + 1) * n // self.world)
        target = None if batch.target is None else batch.target[rows]
        return StepInput(batch.x[rows], batch.dead, batch.settings, target)


ALONE = Peers()


class Clock:
    """Adds wall-clock and CPU time to the state at each lap (checkpoints include them)."""

    def __init__(self, state: TrainingState) -> None:
        self.state = state
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def lap(self) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        self.state.seconds += wall - self.wall
        self.state.cpu_seconds += cpu - self.cpu
        self.wall, self.cpu = wall, cpu


def start_training(dictionary: Dictionary, plan: TrainingPlan) -> torch.optim.Optimizer:
    """Draw ``dictionary``'s initial parameters from ``plan.seed`` and an Adam optimiser over them."""
    dictionary.start_training(torch.Generator().manual_seed(plan.seed), plan)
    return torch.optim.Adam(dictionary.parameters(), lr=plan.lr)


def initialise(dictionary: Dictionary, plan: TrainingPlan, state: TrainingState, rows: Rows) -> None:
    """The input scale from the first rows (mean squared norm -> d_in; a transcoder's targets get a scale of
    their own the same way), then the dictionary's own fit to them."""
    sample, target = split(rows.peek(min(plan.batch_size * 4, plan.buffer_tokens)))
    kind = "an SAE" if target is None else "a transcoder"
    state.scale = _scale_for(sample, f"'{plan.hook}'", kind)
    if target is not None:
        state.target_scale = _scale_for(target, f"the output predicted from '{plan.hook}'", kind)
    dictionary.fit_to_sample(sample * state.scale, None if target is None else target * state.target_scale)
    state.since_fired = torch.zeros(dictionary.d_sae, dtype=torch.long)
    state.fire_counts = torch.zeros(dictionary.d_sae, dtype=torch.long)


def train_step(
    dictionary: Dictionary,
    optimizer: torch.optim.Optimizer,
    plan: TrainingPlan,
    state: TrainingState,
    rows: Rows,
    peers: Peers = ALONE,
) -> dict[str, float]:
    """One optimiser step on the next batch; returns its metrics (the history keeps about 50 of them).
    Data-parallel ranks step on their slices and keep identical states (``Peers``)."""
    x, target = split(rows.next_batch(plan.batch_size))
    x = x * state.scale
    if target is not None:
        target = target * (state.target_scale or 1.0)
    for group in optimizer.param_groups:
        group["lr"] = plan.lr_at(state.step)
    dead = state.since_fired >= plan.dead_after_tokens
    batch = StepInput(x, dead, plan, target)
    out = peers.loss(dictionary, peers.share(batch))
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    with torch.no_grad():
        dictionary.before_optimizer_step()
    optimizer.step()
    with torch.no_grad():
        dictionary.after_optimizer_step()
    fired = peers.total(out.fired.long())
    state.since_fired += x.shape[0]
    state.since_fired[fired > 0] = 0
    state.fire_counts += fired
    state.step += 1
    parts = torch.tensor([float(out.loss.detach()), float(out.error.pow(2).sum()), out.l0], dtype=torch.float64)
    loss, squared, l0 = peers.total(parts).tolist()
    variance = float((batch.wanted - batch.wanted.mean(0)).pow(2).sum())
    metrics = {
        "step": state.step,
        "tokens": state.step * plan.batch_size,
        "loss": loss / peers.world,
        "mse": squared / x.shape[0],
        "fve": 1 - squared / max(variance, 1e-12),
        "l0": l0 / peers.world,
        "dead": float(dead.float().mean()),
    }
    if not math.isfinite(metrics["loss"]):
        raise InputError(f"the SAE's loss became {metrics['loss']} at step {state.step}; lower the learning rate")
    log_every = max(1, plan.steps // 50)
    if state.step % log_every == 0 or state.step == plan.steps:
        state.history.append(metrics)
    return metrics
