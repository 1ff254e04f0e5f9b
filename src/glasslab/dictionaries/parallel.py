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
from the newest checkpoint in the store. Workers with a whole GPU each train on it and join by NCCL; CPU
workers (and workers sharing a GPU, which NCCL refuses) by gloo.

A transcoder set trains the same way (``transcoder_train.py``): every layer's transcoder is a replica of its
own, stepped on the same slice. What differs between the two is a ``ClusterTraining``: ``run_on_cluster``
starts the group, follows rank 0 and returns what rank 0 trained.
"""

from __future__ import annotations

import _thread
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

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
    """This process as one rank of the default torch process group, training on ``device`` (its GPU, if it
    has one: batches, dictionaries and the counters summed go there; what the step keeps stays on CPU)."""

    def __init__(self, device: torch.device) -> None:
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.device = device
        self.replicas: dict[int, DistributedDataParallel] = {}  # by id of the dictionary: a set has several

    def agree(self, value: T) -> T:
        chosen = [value]
        dist.broadcast_object_list(chosen, src=0, device=self.device)
        return chosen[0]

    def replicate(self, dictionary: Dictionary, optimizer: torch.optim.Optimizer | None = None) -> None:
        dictionary.to(self.device)
        if optimizer is not None:  # a restored optimizer's moments are on CPU
            for moments in optimizer.state.values():
                for key, value in moments.items():
                    if key != "step" and isinstance(value, torch.Tensor):
                        moments[key] = value.to(self.device)
        on_gpu = self.device.type == "cuda"
        module = _LossOf(dictionary)
        self.replicas[id(dictionary)] = DistributedDataParallel(module, device_ids=[self.device] if on_gpu else None)

    def loss(self, dictionary: Dictionary, batch: StepInput) -> StepOutput:
        replica = self.replicas.get(id(dictionary))
        if replica is None or replica.module.dictionary is not dictionary:
            raise RuntimeError("replicate(dictionary) must come before its first step")
        return replica(batch)

    def total(self, values: torch.Tensor) -> torch.Tensor:
        summed = values.to(self.device, copy=True)
        dist.all_reduce(summed)
        return summed.cpu()

    def share(self, batch: StepInput) -> StepInput:
        mine = super().share(batch)
        target = None if mine.target is None else mine.target.to(self.device)
        return StepInput(mine.x.to(self.device), mine.dead.to(self.device), mine.settings, target)


class ClusterTraining(Protocol):
    """One kind of training on a cluster: picklable (every worker gets a copy), ``run`` on every rank."""

    what: str  # "SAE training": for the progress bar and errors
    product: str  # "SAE": what was not saved when it stops
    steps: int
    batch_size: int

    def storage(self, model: Model) -> Path:
        """Ray Train's own folder for this training (beside its checkpoints)."""
        ...

    def run(self, model: Model, peers: Peers, on_step: Callable[[int, Any], None]) -> Any:
        """The local loop as one rank; rank 0's result goes to the driver (on CPU)."""
        ...

    def headline(self, metrics: Any) -> dict[str, float]:
        """A step's loss, fve and l0, for the driver's progress bar."""
        ...


class ConfiguredTraining:
    """A ``ClusterTraining``'s steps and batch size, read from its ``config`` (a ``TrainConfig``)."""

    config: TrainConfig

    @property
    def steps(self) -> int:
        return self.config.steps

    @property
    def batch_size(self) -> int:
        return self.config.batch_size


@dataclass(frozen=True)
class _SaeTraining(ConfiguredTraining):
    """An SAE's training (``sae_loop.run_training``) as a ``ClusterTraining``."""

    config: TrainConfig
    name: str
    documents: list[str] | None
    checkpoint_every: int
    what: str = "SAE training"
    product: str = "SAE"

    def storage(self, model: Model) -> Path:
        return checkpoints_of(model, self.name).folder / "ray-train"

    def run(self, model: Model, peers: Peers, on_step: Callable[[int, Any], None]) -> Trained:
        checkpoints = checkpoints_of(model, self.name)
        config, documents, every = self.config, self.documents, self.checkpoint_every
        trained = run_training(model, config, checkpoints, documents, every, on_step, peers, progress=False)
        trained.sae.cpu()
        return trained

    def headline(self, metrics: dict[str, float]) -> dict[str, float]:
        return metrics


@dataclass(frozen=True)
class _Job:
    """What every worker needs: the model's recipe, the training, the caller's on_step, rank 0's queue."""

    recipe: ModelRecipe
    training: ClusterTraining
    on_step: Callable[[int, Any], None] | None
    queue: Any  # ray.util.queue.Queue


def _rank_device(gpus: bool) -> torch.device:
    """This rank's GPU where the workers were given GPUs (Ray Train picks which), else the CPU."""
    if not gpus:
        return torch.device("cpu")
    from ray.train.torch import get_device

    device = get_device()
    torch.cuda.set_device(device)
    return device


def _worker(settings: dict[str, _Job]) -> None:
    """One rank: the local loop with data-parallel peers. An error of glasslab's own (bad input, a NaN loss,
    a cancel) goes to the driver, which stops the run rather than let a restart repeat it."""
    job = settings["job"]
    peers = DataParallelPeers(_rank_device(job.recipe.device == "cuda"))

    def on_step(step: int, metrics: Any) -> None:
        if job.on_step is not None:
            job.on_step(step, metrics)
        if peers.rank == 0:
            job.queue.put(("step", {"step": step, **job.training.headline(metrics)}))

    try:
        trained = job.training.run(job.recipe.load(), peers, on_step)
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
    docs = None if documents is None else list(documents)
    training = _SaeTraining(with_absolute_paths(config), name, docs, checkpoint_every)
    return run_on_cluster(spec, model, training, on_step)


def run_on_cluster(
    spec: ClusterSpec, model: Model, training: ClusterTraining, on_step: Callable[[int, Any], None] | None
) -> Any:
    """Run ``training`` data-parallel on ``spec``'s cluster (NCCL between ranks with a GPU each, else gloo) and
    return rank 0's result; its config's local paths must already be absolute (``with_absolute_paths``)."""
    ray = spec.connect()
    release_workers()  # a harvest's or scan's kept workers would hold the CPUs the training group needs
    workers = spec.worker_count(ray)
    if training.batch_size % workers:
        raise InputError(
            f"batch_size {training.batch_size} does not divide among {workers} workers; "
            f"use a multiple of {workers} (or, on the command line, other --workers)"
        )
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.util.queue import Empty, Queue

    gpus = spec.gpus_per_worker > 0
    queue = Queue(actor_options={"num_cpus": 0})
    try:  # the queue's actor goes whatever fails below
        job = _Job(ModelRecipe.of(model, "cuda" if gpus else "cpu"), training, on_step, queue)
        trainer = TorchTrainer(
            _worker,
            train_loop_config={"job": job},
            torch_config=TorchConfig(backend=backend_for(spec.gpus_per_worker)),
            scaling_config=ScalingConfig(
                num_workers=workers,
                use_gpu=gpus,
                resources_per_worker={"CPU": 1, "GPU": spec.gpus_per_worker} if gpus else None,
            ),
            run_config=RunConfig(
                name=f"train-{training.storage(model).parent.name}",
                storage_path=str(training.storage(model)),
                failure_config=FailureConfig(max_failures=MAX_FAILURES),
            ),
        )
        return _follow(trainer, queue, Empty, training, workers)
    finally:
        ray.kill(queue.actor)


def backend_for(gpus_per_worker: float) -> str:
    """NCCL where every rank has a GPU of its own; gloo on CPUs, and where ranks share a GPU (NCCL refuses two
    ranks on one device; gloo reduces CUDA tensors too)."""
    return "nccl" if gpus_per_worker >= 1 else "gloo"


def with_absolute_paths(config: TrainConfig) -> TrainConfig:
    """``config`` with a local harvest or corpus file named by its absolute path: Ray Train runs each rank in
    a folder of its own, where a relative path names nothing."""
    changes = {}
    for field in ("activations", "corpus"):
        value = getattr(config, field)
        named = field == "corpus" and (value in NAMED or value.startswith("hf:"))
        if value and not named and "://" not in value and Path(value).expanduser().exists():
            changes[field] = str(Path(value).expanduser().resolve())
    return replace(config, **changes)


def _follow(trainer: Any, queue: Any, empty: type[Exception], training: ClusterTraining, workers: int) -> Any:
    """Run ``trainer`` here (Ray Train's own Ctrl-C handler then aborts the run) while a thread shows rank 0's
    steps; rank 0's result, or the error that stopped it."""
    outcome: list[tuple[str, Any]] = []
    fitted = threading.Event()
    in_main_thread = threading.current_thread() is threading.main_thread()
    bar = tqdm(
        total=training.steps,
        desc=f"{training.what} ({workers} workers)",
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

    follower = threading.Thread(target=follow, name="cluster-training-progress", daemon=True)
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
        raise GlasslabError(f"{training.what} on the cluster failed ({first}); run it again to resume")
    if kind != "done":
        raise TrainingCancelled(
            f"training on the cluster stopped at step {bar.n}/{training.steps}; its last checkpoint is kept: "
            f"run the same command again to resume (no {training.product} was saved)"
        )
    return payload
