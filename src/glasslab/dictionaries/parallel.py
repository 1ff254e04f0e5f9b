"""Data-parallel dictionary training on a Ray cluster: Ray Train starts N workers joined by a torch
process group (gloo), and each runs the local training loop (``train.run_training``) as one rank.

Every rank loads the driver's model (``ModelRecipe``) and builds the same shuffle buffer from the same seed,
so all ranks draw the same whole batch; each computes the loss on its equal slice and the dictionary, wrapped
in torch's DistributedDataParallel, gets the ranks' mean gradient. Every loss term is a mean over rows
(reconstruction, L1, L0 and AuxK alike; AuxK's dead set comes from the shared state), so that mean is the
whole batch's gradient and the ranks reproduce the local training up to float rounding. Feature counts and
metrics are summed over the ranks, so every rank keeps the identical state. Rank 0 alone writes checkpoints
to the store and sends each step's metrics and the trained SAE to the driver, which shows one progress bar
and saves the SAE. A worker that dies makes Ray Train restart the group (``FailureConfig``), which resumes
from the newest checkpoint in the store. The SAE itself trains on CPU, as locally, hence gloo: GPU workers
use their GPU for the model's forward passes.
"""

from __future__ import annotations

import _thread
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from ..cluster import ClusterSpec, ModelRecipe, release_workers
from ..data.corpus import NAMED
from ..errors import GlasslabError, InputError
from ..model.model import Model
from ..progress import progress_enabled
from .base import Dictionary, StepInput, StepOutput
from .sae_loop import Trained, TrainingCancelled
from .train import TrainConfig, checkpoints_of, run_training
from .training import Peers, T

MAX_FAILURES = 3  # worker-group restarts before a training on a cluster gives up
_POLL_SECONDS = 0.5


class _LossOf(nn.Module):
    """The dictionary's training loss as a module's forward, which is what DDP wraps."""

    def __init__(self, dictionary: Dictionary) -> None:
        super().__init__()
        self.dictionary = dictionary

    def forward(self, batch: StepInput) -> StepOutput:
        return self.dictionary.loss(batch)


class DataParallelPeers(Peers):
    """This process as one rank of the default torch process group."""

    def __init__(self) -> None:
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.replica: DistributedDataParallel | None = None

    def agree(self, value: T) -> T:
        chosen = [value]
        dist.broadcast_object_list(chosen, src=0)
        return chosen[0]

    def replicate(self, dictionary: Dictionary) -> None:
        self.replica = DistributedDataParallel(_LossOf(dictionary))

    def loss(self, dictionary: Dictionary, batch: StepInput) -> StepOutput:
        if self.replica is None or self.replica.module.dictionary is not dictionary:
            raise RuntimeError("replicate(dictionary) must come before its first step")
        return self.replica(batch)

    def total(self, values: torch.Tensor) -> torch.Tensor:
        summed = values.clone()
        dist.all_reduce(summed)
        return summed


@dataclass(frozen=True)
class _Job:
    """What every worker needs: picklable settings, and the queue rank 0 reports to."""

    recipe: ModelRecipe
    config: TrainConfig
    name: str
    documents: list[str] | None
    checkpoint_every: int
    on_step: Callable[[int, dict[str, float]], None] | None
    queue: Any  # ray.util.queue.Queue


def _worker(settings: dict[str, _Job]) -> None:
    """One rank: the local loop with data-parallel peers. An error of glasslab's own (bad input, a NaN loss,
    a cancel) goes to the driver, which stops the run rather than let a restart repeat it."""
    job = settings["job"]
    peers = DataParallelPeers()

    def on_step(step: int, metrics: dict[str, float]) -> None:
        if job.on_step is not None:
            job.on_step(step, metrics)
        if peers.rank == 0:
            job.queue.put(("step", metrics))

    try:
        model = job.recipe.load()
        checkpoints = checkpoints_of(model, job.name)
        trained = run_training(
            model, job.config, checkpoints, job.documents, job.checkpoint_every, on_step, peers, progress=False
        )
    except TrainingCancelled as cancelled:  # every rank stops at the same step, so none waits for another
        job.queue.put(("error", cancelled))
        return
    except GlasslabError as error:
        job.queue.put(("error", error))
        raise  # Ray Train then stops the group: the other ranks would wait in a collective for this one
    if peers.rank == 0:
        job.queue.put(("done", trained))


def train_on_cluster(
    spec: ClusterSpec,
    model: Model,
    config: TrainConfig,
    name: str,
    documents: Iterable[str] | None,
    checkpoint_every: int,
    on_step: Callable[[int, dict[str, float]], None] | None,
) -> Trained:
    """Train on ``spec``'s cluster and return rank 0's trained SAE and state (the driver saves it)."""
    ray = spec.connect()
    release_workers()  # a harvest's or scan's kept workers would hold the CPUs the training group needs
    workers = spec.worker_count(ray)
    if config.batch_size % workers:
        raise InputError(
            f"batch_size {config.batch_size} does not divide among {workers} workers; "
            f"use a multiple of {workers} or other --workers"
        )
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.util.queue import Empty, Queue

    gpus = spec.gpus_per_worker > 0
    recipe = ModelRecipe.of(model, "cuda" if gpus else "cpu")
    config = _with_absolute_paths(config)
    queue = Queue(actor_options={"num_cpus": 0})
    try:  # the queue's actor goes whatever fails below
        job = _Job(
            recipe,
            config,
            name,
            None if documents is None else list(documents),
            checkpoint_every,
            on_step,
            queue,
        )
        trainer = TorchTrainer(
            _worker,
            train_loop_config={"job": job},
            torch_config=TorchConfig(backend="gloo"),
            scaling_config=ScalingConfig(
                num_workers=workers,
                use_gpu=gpus,
                resources_per_worker={"CPU": 1, "GPU": spec.gpus_per_worker} if gpus else None,
            ),
            run_config=RunConfig(
                name=f"train-{name}",
                storage_path=str(checkpoints_of(model, name).folder / "ray-train"),
                failure_config=FailureConfig(max_failures=MAX_FAILURES),
            ),
        )
        return _follow(trainer, queue, Empty, config, workers)
    finally:
        ray.kill(queue.actor)


def _with_absolute_paths(config: TrainConfig) -> TrainConfig:
    """``config`` with a local harvest or corpus file named by its absolute path: Ray Train runs each rank in
    a folder of its own, where a relative path names nothing."""
    changes = {}
    for field in ("activations", "corpus"):
        value = getattr(config, field)
        named = field == "corpus" and (value in NAMED or value.startswith("hf:"))
        if value and not named and "://" not in value and Path(value).expanduser().exists():
            changes[field] = str(Path(value).expanduser().resolve())
    return replace(config, **changes)


def _follow(trainer: Any, queue: Any, empty: type[Exception], config: TrainConfig, workers: int) -> Trained:
    """Run ``trainer`` here (Ray Train's own Ctrl-C handler then aborts the run) while a thread shows rank 0's
    steps; rank 0's trained SAE, or the error that stopped it."""
    outcome: list[tuple[str, Any]] = []
    fitted = threading.Event()
    in_main_thread = threading.current_thread() is threading.main_thread()
    bar = tqdm(
        total=config.steps,
        desc=f"training SAE on {config.hook} ({workers} workers)",
        unit="step",
        disable=not progress_enabled(),
        file=sys.stderr,
    )

    def follow() -> None:
        while not outcome and not (fitted.is_set() and queue.empty()):
            try:
                kind, payload = queue.get(timeout=_POLL_SECONDS)
            except empty:  # nothing reported yet
                continue
            if kind == "step":
                bar.update(int(payload["step"]) - bar.n)  # a restart goes back to its checkpoint's step
                bar.set_postfix(loss=f"{payload['loss']:.3g}", fve=f"{payload['fve']:.3f}", l0=f"{payload['l0']:.1f}")
                continue
            outcome.append((kind, payload))
            if kind == "error" and in_main_thread:  # abort at once: a restart would only repeat the error
                _thread.interrupt_main()  # (elsewhere Ray Train has no Ctrl-C handler: its restarts run out)

    follower = threading.Thread(target=follow, name="sae-training-progress", daemon=True)
    follower.start()
    failure: Exception | None = None
    try:
        trainer.fit()
    except (KeyboardInterrupt, SystemExit):  # Ray Train's Ctrl-C handler aborted the run and exits
        if not outcome:  # a real Ctrl-C; else a rank's error, which interrupted this thread to abort the run
            raise
    except Exception as error:  # Ray Train gave up (MAX_FAILURES restarts), or could not start
        failure = error
    finally:
        fitted.set()
        follower.join()
        bar.close()
    kind, payload = outcome[0] if outcome else ("none", None)
    if kind == "error":
        raise payload
    if failure is not None:
        first = (str(failure).strip().splitlines() or [type(failure).__name__])[0][:300]
        raise GlasslabError(f"SAE training on the cluster failed ({first}); run it again to resume")
    if kind != "done":
        raise TrainingCancelled(
            f"training on the cluster stopped at step {bar.n}/{config.steps}; its last checkpoint is kept: "
            "run the same command again to resume (no SAE was saved)"
        )
    trained: Trained = payload
    trained.workers = workers
    return trained
